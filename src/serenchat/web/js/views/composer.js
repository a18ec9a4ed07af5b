// The message box: Enter sends, Shift+Enter adds a line, typing is
// announced to the room, and each room keeps its own draft.

// The server ends an indicator that is not refreshed within typing_ttl
// (6 s by default); refresh well inside that, and stop after a pause.
const TYPING_REFRESH = 3_000;
const TYPING_PAUSE = 4_000;

export class Composer {
  /**
   * actions: {send(text), typing(room, active), editLast()}
   */
  constructor(els, actions) {
    this.els = els; // {form, input, label}
    this.actions = actions;
    this.room = null;
    this.drafts = new Map();
    this.typingSince = 0;
    this.pauseTimer = 0;
    this.grows = CSS.supports("field-sizing", "content");

    els.input.addEventListener("keydown", (event) => this.onKey(event));
    els.input.addEventListener("input", () => this.onInput());
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  setRoom(room, label) {
    if (this.room) {
      this.stopTyping();
      this.drafts.set(this.room.id, this.els.input.value);
    }
    this.room = room;
    this.els.label.textContent = label;
    this.els.input.placeholder = label;
    this.els.input.value = room ? (this.drafts.get(room.id) ?? "") : "";
    this.fit();
  }

  focus() {
    this.els.input.focus();
  }

  onKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.submit();
    } else if (event.key === "ArrowUp" && this.els.input.value === "") {
      if (this.actions.editLast()) event.preventDefault();
    }
  }

  onInput() {
    this.fit();
    if (!this.room) return;
    if (this.els.input.value.trim() === "") {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (now - this.typingSince > TYPING_REFRESH) {
      this.typingSince = now;
      this.actions.typing(this.room, true);
    }
    clearTimeout(this.pauseTimer);
    this.pauseTimer = setTimeout(() => this.stopTyping(), TYPING_PAUSE);
  }

  stopTyping() {
    clearTimeout(this.pauseTimer);
    if (this.typingSince && this.room) this.actions.typing(this.room, false);
    this.typingSince = 0;
  }

  submit() {
    const text = this.els.input.value;
    if (!text.trim() || !this.room) return;
    // Sending ends the indicator on the server; no need to say so.
    clearTimeout(this.pauseTimer);
    this.typingSince = 0;
    this.els.input.value = "";
    this.drafts.delete(this.room.id);
    this.fit();
    this.actions.send(text);
  }

  // Browsers without field-sizing get the height set from script; setting
  // a property through the CSSOM is allowed by the style-src policy.
  fit() {
    if (this.grows) return;
    const input = this.els.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  }
}
