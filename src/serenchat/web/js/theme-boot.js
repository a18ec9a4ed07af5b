// Runs before first paint (a classic script in <head>): apply the theme the
// person chose last time. Without a choice the stylesheet follows
// prefers-color-scheme, so nothing needs doing here.
(function () {
  "use strict";
  try {
    var saved = window.localStorage.getItem("serenchat.theme");
    if (saved === "light" || saved === "dark") {
      document.documentElement.dataset.theme = saved;
    }
  } catch (e) {
    // Storage can be disabled; the system preference then decides.
  }
})();
