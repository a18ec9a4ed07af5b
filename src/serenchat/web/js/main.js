// Entry point: resume a stored session or ask the person to sign in.

import { Api } from "./api.js";
import { App, SESSION_KEY } from "./app.js";
import { showAuth } from "./views/auth.js";

const NOTICE_KEY = "serenchat.notice";

function loadSession() {
  try {
    const session = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
    return session?.token && session?.user?.username ? session : null;
  } catch {
    return null;
  }
}

function begin(session) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  const app = new App(session, (notice) => {
    localStorage.removeItem(SESSION_KEY);
    if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
    // A reload is the surest way to leave nothing of the old session
    // behind: sockets, timers, listeners and messages in memory.
    location.replace("/");
  });
  app.start();
  // Tests and the curious can reach the running app from the console.
  window.serenchat = app;
}

function main() {
  const session = loadSession();
  if (session) {
    begin(session);
    return;
  }
  const notice = sessionStorage.getItem(NOTICE_KEY) ?? "";
  sessionStorage.removeItem(NOTICE_KEY);
  showAuth(
    new Api(
      () => null,
      () => {},
    ),
    begin,
    notice,
  );
}

main();
