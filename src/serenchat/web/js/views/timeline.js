// The message list of the open room.
//
// Rendering keeps one element per message (keyed by message id, or by
// client_id while pending) and only moves or rebuilds what changed, so
// that focus, text selection and the scroll position survive updates.
//
// Scrolling: while the reader is at the bottom the view follows new
// messages; once they scroll up it stays put and a pill counts what
// arrived. Older pages are prepended with the first visible message held
// at the same place on screen, so the content does not jump.

import { attr, avatar, h, hueOf, icon, reconcile, text } from "../dom.js";
import { clock, dayKey, dayLabel, fullTime, richText } from "../format.js";

// Consecutive messages of one sender within this window share a header.
const GROUP_GAP_MS = 5 * 60 * 1000;
// Within this distance of an edge counts as being at it.
const BOTTOM_SLACK = 48;
const TOP_PREFETCH = 400;

export class Timeline {
  /**
   * els: {scroller, list, status, pill}
   * store: the session Store
   * actions: {loadOlder(room), edit(room, message, text), remove(room, message),
   *   retry(room, pending), discard(room, pending), readable(room), focusComposer()}
   */
  constructor(els, store, actions) {
    this.els = els;
    this.store = store;
    this.actions = actions;
    this.room = null;
    this.maxLength = 4000; // the server's max_message_length, once known
    this.nodes = new Map(); // key -> {el, sig}
    this.days = new Map(); // day key -> separator element
    this.stuck = true;
    this.unseen = 0;
    this.rovingKey = null;
    this.editingId = null;
    this.editorEl = null;
    this.olderFailed = false;

    els.scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    els.list.addEventListener("keydown", (event) => this.onKey(event));
    els.list.addEventListener("focusin", (event) => this.onFocus(event));
    els.list.addEventListener("click", (event) => this.onClick(event));
    els.pill.addEventListener("click", () => this.toBottom(true));
    // Keep the bottom in view when the viewport changes (phone keyboard,
    // window resize, the composer growing).
    new ResizeObserver(() => {
      if (this.stuck) this.pinBottom();
    }).observe(els.scroller);
  }

  /** Switch to a room (or to none), starting at its newest message. */
  show(room) {
    this.room = room;
    this.nodes.clear();
    this.days.clear();
    this.els.list.replaceChildren();
    this.stuck = true;
    this.unseen = 0;
    this.rovingKey = null;
    this.editingId = null;
    this.editorEl = null;
    this.olderFailed = false;
    this.render();
  }

  /** Bring the DOM in line with the room's state. */
  render() {
    const room = this.room;
    const { scroller, list } = this.els;
    if (!room) {
      list.replaceChildren();
      this.renderStatus();
      return;
    }

    const anchor = this.stuck ? null : this.anchor();
    const nodes = this.build(room);
    reconcile(list, nodes);
    this.renderStatus();
    this.updateRoving();

    if (this.stuck) {
      this.pinBottom();
    } else if (anchor && anchor.el.isConnected) {
      const moved = anchor.el.getBoundingClientRect().top - anchor.top;
      if (moved) scroller.scrollTop += moved;
    }
    this.renderPill();
    // A short room does not scroll, so no scroll event would ever ask for
    // more; ask here.
    this.maybeLoadOlder();
  }

  build(room) {
    const nodes = [];
    const used = new Set();
    let previous = null;
    let lastDay = null;

    const add = (item, key, pending) => {
      const date = pending ? new Date(item.createdAt) : new Date(item.created_at);
      const day = dayKey(date);
      if (day !== lastDay) {
        nodes.push(this.daySeparator(day, date));
        lastDay = day;
        previous = null;
      }
      const continued = Boolean(
        previous &&
        previous.sender === item.sender &&
        !previous.deleted &&
        date - previous.date < GROUP_GAP_MS,
      );
      nodes.push(this.messageNode(room, item, key, pending, continued, date));
      used.add(key);
      previous = { sender: item.sender, deleted: item.deleted, date };
    };

    for (const message of room.messages) {
      const key = `m${message.id}`;
      this.adoptPending(message, key);
      add(message, key, false);
    }
    for (const pending of room.pending.values()) {
      add({ ...pending, sender: this.store.me }, `p${pending.client_id}`, true);
    }

    for (const key of this.nodes.keys()) if (!used.has(key)) this.nodes.delete(key);
    return nodes;
  }

  // The element that showed a pending message becomes the confirmed
  // message's element, so it neither flickers nor loses focus.
  adoptPending(message, key) {
    if (!message.client_id || message.sender !== this.store.me || this.nodes.has(key)) {
      return;
    }
    const pendingKey = `p${message.client_id}`;
    const node = this.nodes.get(pendingKey);
    if (!node) return;
    this.nodes.delete(pendingKey);
    this.nodes.set(key, node);
    node.el.dataset.key = key;
    if (this.rovingKey === pendingKey) this.rovingKey = key;
  }

  daySeparator(day, date) {
    let el = this.days.get(day);
    if (!el) {
      el = h(
        "li",
        { class: "day", role: "presentation" },
        h("h2", { class: "day-label" }),
      );
      this.days.set(day, el);
    }
    // Relabel: "Today" becomes "Yesterday" at midnight.
    text(el.firstChild, dayLabel(date));
    return el;
  }

  messageNode(room, item, key, pending, continued, date) {
    const me = this.store.me;
    const own = item.sender === me;
    const marks =
      own && !pending && !item.deleted ? this.store.marks(room, item) : null;
    const editing = !pending && this.editingId === item.id && !item.deleted;
    const sig = JSON.stringify([
      item.text,
      item.edited_at,
      item.deleted,
      continued,
      pending ? (item.failed ?? "pending") : null,
      // Receipts move every second; while editing they wait, so that the
      // editor is not rebuilt under the person's fingers.
      marks && !editing && [marks.state, marks.read, marks.delivered, marks.others],
      editing,
      clock(date),
    ]);

    let node = this.nodes.get(key);
    if (!node) {
      const el = h("li", { class: "msg", tabindex: "-1", dataset: { key } });
      node = { el, sig: null };
      this.nodes.set(key, node);
    }
    const { el } = node;
    if (!pending) {
      el.dataset.id = item.id;
      el.dataset.seq = item.seq;
    }
    el.classList.toggle("own", own);
    el.classList.toggle("continued", continued);
    el.classList.toggle("pending", pending && !item.failed);
    el.classList.toggle("failed", Boolean(pending && item.failed));
    el.classList.toggle("deleted", Boolean(item.deleted));
    el.classList.toggle("editing", editing);
    if (marks) el.dataset.mark = marks.state;
    else if (pending) el.dataset.mark = item.failed ? "failed" : "pending";
    else delete el.dataset.mark;

    if (node.sig !== sig) {
      node.sig = sig;
      el.replaceChildren(
        ...this.content(room, item, pending, continued, date, marks, editing),
      );
    }
    return el;
  }

  content(room, item, pending, continued, date, marks, editing) {
    const me = this.store.me;
    const own = item.sender === me;
    const parts = [];
    const time = h("time", {
      class: continued ? "msg-time gutter-time" : "msg-time",
      datetime: date.toISOString(),
      title: fullTime(date),
      text: clock(date),
    });

    if (continued) {
      parts.push(h("span", { class: "msg-gutter" }, time));
    } else {
      parts.push(avatar(item.sender));
    }

    const main = h("div", { class: "msg-main" });
    if (continued) {
      main.append(h("span", { class: "visually-hidden", text: `${item.sender}:` }));
    } else {
      main.append(
        h(
          "div",
          { class: "msg-head" },
          h("span", {
            class: `msg-sender name-hue-${hueOf(item.sender)}`,
            text: item.sender,
          }),
          own ? h("span", { class: "you-tag", text: "you" }) : null,
          time,
        ),
      );
    }

    if (item.deleted) {
      main.append(
        h(
          "p",
          { class: "msg-text msg-deleted" },
          icon("trash", "icon tiny"),
          "Message deleted",
        ),
      );
    } else if (editing) {
      // One editor per editing session: re-rendering (receipts move every
      // second) must not throw away what is being typed.
      this.editorEl ??= this.editor(room, item);
      main.append(this.editorEl);
    } else {
      const body = h("p", { class: "msg-text" }, ...richText(item.text));
      if (item.edited_at) {
        const edited = new Date(item.edited_at);
        body.append(
          " ",
          h("span", {
            class: "edited",
            title: `Edited ${fullTime(edited)}`,
            text: "(edited)",
          }),
        );
      }
      main.append(body);
    }

    if (pending && item.failed) {
      main.append(
        h(
          "p",
          { class: "msg-error", role: "alert" },
          icon("alert", "icon tiny"),
          h("span", { text: `Not sent: ${item.failed}` }),
          h("button", {
            type: "button",
            class: "link-button",
            dataset: { act: "retry" },
            text: "Retry",
          }),
          h("button", {
            type: "button",
            class: "link-button",
            dataset: { act: "discard" },
            text: "Discard",
          }),
        ),
      );
    }
    parts.push(main);

    parts.push(this.status(room, pending, item, marks));

    const canEdit = own && !pending && !item.deleted && !editing;
    const canDelete =
      !pending && !item.deleted && !editing && (own || room.owner === me);
    if (canEdit || canDelete) {
      parts.push(
        h(
          "div",
          { class: "msg-actions" },
          canEdit
            ? h(
                "button",
                {
                  type: "button",
                  class: "icon-button small",
                  "aria-label": "Edit message",
                  title: "Edit (E)",
                  dataset: { act: "edit" },
                },
                icon("pencil"),
              )
            : null,
          canDelete
            ? h(
                "button",
                {
                  type: "button",
                  class: "icon-button small danger",
                  "aria-label": "Delete message",
                  title: "Delete (Delete key)",
                  dataset: { act: "delete" },
                },
                icon("trash"),
              )
            : null,
        ),
      );
    }
    return parts;
  }

  status(room, pending, item, marks) {
    if (pending) {
      if (item.failed) {
        return h(
          "span",
          { class: "msg-status failed", title: "Not sent" },
          icon("alert", "icon tiny"),
          h("span", { class: "visually-hidden", text: "Not sent" }),
        );
      }
      return h(
        "span",
        { class: "msg-status", title: "Sending…" },
        icon("clock", "icon tiny"),
        h("span", { class: "visually-hidden", text: "Sending" }),
      );
    }
    if (!marks) return h("span", { class: "msg-status" });
    const children = [icon(marks.state === "sent" ? "check" : "checks", "icon tiny")];
    if (!room.isDirect && marks.read > 0) {
      children.push(
        h("span", {
          class: "mark-count",
          "aria-hidden": "true",
          text: String(marks.read),
        }),
      );
    }
    children.push(h("span", { class: "visually-hidden", text: marks.label }));
    return h(
      "span",
      { class: `msg-status mark-${marks.state}`, title: marks.label },
      ...children,
    );
  }

  editor(room, message) {
    const input = h("textarea", {
      class: "edit-input",
      rows: "1",
      maxlength: String(this.maxLength),
      "aria-label": "Edit message",
    });
    input.value = message.text;
    const save = () => {
      const value = input.value;
      if (!value.trim() || value === message.text) {
        this.stopEditing(true);
        return;
      }
      this.actions.edit(room, message, value);
      this.stopEditing(true);
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        save();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.stopEditing(true);
      }
    });
    const form = h(
      "form",
      { class: "edit-form" },
      input,
      h(
        "div",
        { class: "edit-buttons" },
        h("span", { class: "edit-hint", text: "Enter saves · Esc cancels" }),
        h("button", {
          type: "button",
          class: "button small ghost",
          dataset: { act: "cancel-edit" },
          text: "Cancel",
        }),
        h("button", { type: "submit", class: "button small primary", text: "Save" }),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      save();
    });
    queueMicrotask(() => {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    });
    return form;
  }

  startEditing(id) {
    this.editingId = id;
    this.editorEl = null;
    this.rovingKey = `m${id}`;
    this.render();
  }

  stopEditing(refocus) {
    const key = this.editingId === null ? null : `m${this.editingId}`;
    this.editingId = null;
    this.editorEl = null;
    this.render();
    if (refocus && key) this.nodes.get(key)?.el.focus();
  }

  renderStatus() {
    const { status } = this.els;
    const room = this.room;
    status.replaceChildren();
    status.className = "history-status";
    if (!room) return;
    if (room.loadingOlder || (!room.loaded && room.messages.length === 0)) {
      status.classList.add("loading");
      status.append(
        h("span", { class: "spinner", "aria-hidden": "true" }),
        "Loading messages…",
      );
    } else if (this.olderFailed) {
      status.append(
        "Earlier messages could not be loaded. ",
        h("button", {
          type: "button",
          class: "link-button",
          text: "Try again",
          onclick: () => {
            this.olderFailed = false;
            this.maybeLoadOlder(true);
          },
        }),
      );
    } else if (room.loaded && !room.hasOlder) {
      const name = this.store.nameOf(room);
      status.classList.add("beginning");
      status.append(
        h(
          "span",
          { class: "beginning-icon", "aria-hidden": "true" },
          icon(room.isDirect ? "chat" : "hash"),
        ),
        h("strong", { text: room.isDirect ? name : room.title }),
        h("span", {
          text: room.isDirect
            ? `This is the beginning of your conversation with ${name}.`
            : `This is the very beginning of ${room.title}.`,
        }),
      );
    }
  }

  // Roving tabindex: the message list is one stop in the Tab order; the
  // arrow keys move between messages, and Tab from a message reaches its
  // buttons.
  updateRoving() {
    const nodes = this.els.list.querySelectorAll("li.msg");
    if (nodes.length === 0) return;
    // Until the person moves into the list, Tab lands on the newest message.
    const inside = this.els.list.contains(document.activeElement);
    if (!inside || !this.nodes.has(this.rovingKey)) {
      this.rovingKey = nodes[nodes.length - 1].dataset.key;
    }
    for (const el of nodes) {
      const current = el.dataset.key === this.rovingKey;
      attr(el, "tabindex", current ? "0" : "-1");
      for (const control of el.querySelectorAll("button, a")) {
        attr(control, "tabindex", current ? "0" : "-1");
      }
    }
  }

  onFocus(event) {
    const li = event.target.closest("li.msg");
    if (li && li.dataset.key !== this.rovingKey) {
      this.rovingKey = li.dataset.key;
      this.updateRoving();
    }
  }

  onKey(event) {
    if (event.target.closest(".edit-form")) return;
    const li = event.target.closest("li.msg");
    if (!li) return;
    const all = [...this.els.list.querySelectorAll("li.msg")];
    const index = all.indexOf(li);
    let target = null;
    switch (event.key) {
      case "ArrowUp":
        target = all[index - 1];
        if (!target) this.maybeLoadOlder(true);
        break;
      case "ArrowDown":
        target = all[index + 1];
        break;
      case "Home":
        target = all[0];
        break;
      case "End":
        target = all[all.length - 1];
        break;
      case "Escape":
        event.preventDefault();
        this.actions.focusComposer();
        return;
      case "e":
      case "E":
        if (event.target === li && li.querySelector('[data-act="edit"]')) {
          event.preventDefault();
          this.startEditing(Number(li.dataset.id));
        }
        return;
      case "Delete":
      case "Backspace":
        if (event.target === li && li.querySelector('[data-act="delete"]')) {
          event.preventDefault();
          this.requestDelete(li);
        }
        return;
      default:
        return;
    }
    event.preventDefault();
    if (target) {
      this.rovingKey = target.dataset.key;
      this.updateRoving();
      target.focus();
      target.scrollIntoView({ block: "nearest" });
    }
  }

  onClick(event) {
    const button = event.target.closest("button[data-act]");
    if (!button) return;
    const li = button.closest("li.msg");
    const room = this.room;
    const key = li?.dataset.key ?? "";
    switch (button.dataset.act) {
      case "edit":
        this.startEditing(Number(li.dataset.id));
        break;
      case "delete":
        this.requestDelete(li);
        break;
      case "cancel-edit":
        this.stopEditing(true);
        break;
      case "retry":
      case "discard": {
        const pending = room.pending.get(key.slice(1));
        if (pending) this.actions[button.dataset.act](room, pending);
        break;
      }
    }
  }

  requestDelete(li) {
    const message = this.room.byId.get(Number(li.dataset.id));
    if (message) this.actions.remove(this.room, message, li);
  }

  // Scrolling.

  // The first message in view. Never a day separator: those are shared by
  // a whole day and move to the top when older messages of it arrive.
  anchor() {
    const top = this.els.scroller.getBoundingClientRect().top;
    for (const el of this.els.list.querySelectorAll("li.msg")) {
      const rect = el.getBoundingClientRect();
      if (rect.bottom > top) return { el, top: rect.top };
    }
    return null;
  }

  pinBottom() {
    const { scroller } = this.els;
    scroller.scrollTop = scroller.scrollHeight;
  }

  toBottom(smooth = false) {
    const { scroller } = this.els;
    const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    scroller.scrollTo({
      top: scroller.scrollHeight,
      behavior: smooth && !reduced ? "smooth" : "auto",
    });
    this.stuck = true;
    this.unseen = 0;
    this.renderPill();
  }

  onScroll() {
    const { scroller } = this.els;
    const gap = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    this.stuck = gap <= BOTTOM_SLACK;
    if (this.stuck && this.unseen) {
      this.unseen = 0;
      this.renderPill();
    }
    if (this.stuck && this.room) this.actions.readable(this.room);
    this.maybeLoadOlder();
  }

  maybeLoadOlder(force = false) {
    const room = this.room;
    if (
      !room ||
      !room.loaded ||
      !room.hasOlder ||
      room.loadingOlder ||
      this.olderFailed
    )
      return;
    if (!force && this.els.scroller.scrollTop > TOP_PREFETCH) return;
    this.actions.loadOlder(room).catch(() => {
      this.olderFailed = true;
      this.renderStatus();
    });
  }

  /** Messages from others arrived: count them on the pill unless at the bottom. */
  noteIncoming(count) {
    if (this.stuck) return;
    this.unseen += count;
    this.renderPill();
  }

  renderPill() {
    const { pill } = this.els;
    const show = !this.stuck && this.unseen > 0;
    pill.hidden = !show;
    if (show) {
      const label = this.unseen === 1 ? "1 new message" : `${this.unseen} new messages`;
      pill.replaceChildren(icon("down", "icon tiny"), h("span", { text: label }));
    }
  }
}
