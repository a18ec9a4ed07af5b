// Light and dark Solarized themes. Without a stored choice the page follows
// the system's prefers-color-scheme; a choice made here is remembered.

import { icon } from "./dom.js";

const KEY = "serenchat.theme";
const dark = window.matchMedia("(prefers-color-scheme: dark)");

export function currentTheme() {
  return document.documentElement.dataset.theme ?? (dark.matches ? "dark" : "light");
}

function store(theme) {
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // Without storage the choice lasts for this page only.
  }
}

/** Wire the toggle button; keep its icon and label in step. */
export function setupThemeToggle(button) {
  const paint = () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    button.replaceChildren(icon(next === "dark" ? "moon" : "sun"));
    // A toggle keeps one label; aria-pressed tells its state.
    button.setAttribute("aria-label", "Dark theme");
    button.setAttribute("aria-pressed", String(currentTheme() === "dark"));
    button.title = `Switch to the ${next} theme`;
  };
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    store(next);
    paint();
  });
  dark.addEventListener("change", paint);
  paint();
}
