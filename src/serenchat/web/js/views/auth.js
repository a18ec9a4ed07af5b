// The sign-in and registration form.

import { ChatError } from "../api.js";

/**
 * Show the form; call onSession({user, token}) once signed in. `notice` is
 * shown above the form (for example after a session expired).
 */
export function showAuth(api, onSession, notice = "") {
  const root = document.getElementById("auth");
  const form = document.getElementById("auth-form");
  const username = document.getElementById("auth-username");
  const password = document.getElementById("auth-password");
  const error = document.getElementById("auth-error");
  const submit = document.getElementById("auth-submit");
  const loginTab = document.getElementById("auth-mode-login");
  const registerTab = document.getElementById("auth-mode-register");
  let mode = "login";

  const setMode = (next) => {
    mode = next;
    loginTab.setAttribute("aria-pressed", String(mode === "login"));
    registerTab.setAttribute("aria-pressed", String(mode === "register"));
    submit.textContent = mode === "login" ? "Sign in" : "Create account";
    password.autocomplete = mode === "login" ? "current-password" : "new-password";
    // The rules for names and passwords matter only when choosing them.
    for (const hint of form.querySelectorAll(".field-hint"))
      hint.hidden = mode === "login";
    error.textContent = "";
  };
  loginTab.addEventListener("click", () => setMode("login"));
  registerTab.addEventListener("click", () => setMode("register"));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const name = username.value.trim().toLowerCase();
    if (!name) {
      error.textContent = "Enter a username.";
      username.focus();
      return;
    }
    if (mode === "register" && password.value.length < 8) {
      error.textContent = "Choose a password of at least 8 characters.";
      password.focus();
      return;
    }
    submit.disabled = true;
    try {
      const session =
        mode === "login"
          ? await api.login(name, password.value)
          : await api.register(name, password.value);
      password.value = "";
      root.hidden = true;
      onSession(session);
    } catch (exc) {
      error.textContent = explain(exc, mode);
      (exc.code === "conflict" ? username : password).focus();
    } finally {
      submit.disabled = false;
    }
  });

  setMode("login");
  error.textContent = notice;
  root.hidden = false;
  document.title = "Sign in · SerenChat";
  username.focus();
}

function explain(exc, mode) {
  if (!(exc instanceof ChatError)) return "Something went wrong. Please try again.";
  switch (exc.code) {
    case "unauthorized":
      return "That username and password do not match.";
    case "conflict":
      return "That username is taken. Pick another, or sign in.";
    case "network":
      return "The server cannot be reached. Check your connection and try again.";
    case "bad_request":
      return sentence(exc.message);
    default:
      return mode === "login"
        ? "Signing in failed. Please try again."
        : sentence(exc.message);
  }
}

function sentence(text) {
  const trimmed = text.trim();
  if (!trimmed) return "Please check what you entered.";
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}
