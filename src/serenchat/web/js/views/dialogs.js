// Modal dialogs on the page's one <dialog>: create a room, browse public
// rooms, start a direct message, add a member, confirm a deletion.
//
// The native modal dialog traps focus and closes on Escape; we return
// focus to whatever opened it.

import { h, icon } from "../dom.js";

const dialog = () => document.getElementById("dialog");

/** What an onSubmit returns to keep its dialog open after success. */
export const KEEP_OPEN = Symbol("keep open");

/**
 * Show a form dialog. `onSubmit(form)` may throw an Error whose message is
 * shown in the dialog; when it resolves the dialog closes, unless it
 * resolved to KEEP_OPEN. Returns a promise that settles on closing.
 */
export function formDialog({ title, intro, fields, submit, onSubmit, danger = false }) {
  const el = dialog();
  const opener = document.activeElement;
  const error = h("p", { class: "form-error", role: "alert" });
  const submitButton = h("button", {
    type: "submit",
    class: `button ${danger ? "danger" : "primary"}`,
    text: submit,
  });
  const form = h(
    "form",
    { class: "dialog-form", novalidate: true },
    h(
      "header",
      { class: "dialog-head" },
      h("h2", { id: "dialog-title", text: title }),
      h(
        "button",
        {
          type: "button",
          class: "icon-button",
          "aria-label": "Close",
          onclick: () => el.close(),
        },
        icon("close"),
      ),
    ),
    intro ? h("p", { class: "dialog-intro", id: "dialog-intro", text: intro }) : null,
    h("div", { class: "dialog-body" }, ...fields),
    error,
    h(
      "footer",
      { class: "dialog-foot" },
      h("button", {
        type: "button",
        class: "button ghost",
        text: "Cancel",
        onclick: () => el.close(),
      }),
      submitButton,
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submitButton.disabled = true;
    try {
      if ((await onSubmit(form)) !== KEEP_OPEN) el.close();
    } catch (exc) {
      error.textContent = exc.message || String(exc);
    } finally {
      submitButton.disabled = false;
    }
  });

  el.replaceChildren(form);
  if (intro) el.setAttribute("aria-describedby", "dialog-intro");
  else el.removeAttribute("aria-describedby");
  return new Promise((resolve) => {
    el.addEventListener(
      "close",
      () => {
        el.replaceChildren();
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve();
      },
      { once: true },
    );
    el.showModal();
    const first = form.querySelector("input, textarea, select, .dialog-body button");
    (first ?? submitButton).focus();
  });
}

/** A labelled input with an optional hint, for formDialog fields. */
export function field({ id, label, hint, ...props }) {
  const input = h("input", {
    id,
    name: id,
    ...props,
    "aria-describedby": hint ? `${id}-hint` : null,
  });
  return h(
    "div",
    { class: "field" },
    h("label", { for: id, text: label }),
    input,
    hint ? h("p", { class: "field-hint", id: `${id}-hint`, text: hint }) : null,
  );
}

/** A lower-case slug of a title, usable as a room id. */
export function slugify(title) {
  return title
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
}

export function createRoomDialog(onCreate) {
  const title = field({
    id: "room-name",
    label: "Name",
    required: true,
    maxlength: "200",
    placeholder: "Book club",
  });
  const id = field({
    id: "room-id",
    label: "Address",
    hint: "Lower-case letters, digits, - and _. It cannot be changed later.",
    required: true,
    maxlength: "64",
    pattern: "[a-z0-9_\\-]{1,64}",
    spellcheck: "false",
    autocapitalize: "none",
  });
  const privacy = h(
    "fieldset",
    { class: "choice" },
    h("legend", { text: "Who can join" }),
    h(
      "label",
      { class: "radio" },
      h("input", { type: "radio", name: "privacy", value: "public", checked: true }),
      h(
        "span",
        {},
        h("strong", { text: "Public" }),
        h("small", { text: "Anyone on this server can find and join it." }),
      ),
    ),
    h(
      "label",
      { class: "radio" },
      h("input", { type: "radio", name: "privacy", value: "private" }),
      h(
        "span",
        {},
        h("strong", { text: "Private" }),
        h("small", { text: "Only people you add can see it." }),
      ),
    ),
  );
  const titleInput = title.querySelector("input");
  const idInput = id.querySelector("input");
  let edited = false;
  titleInput.addEventListener("input", () => {
    if (!edited) idInput.value = slugify(titleInput.value);
  });
  idInput.addEventListener("input", () => {
    edited = true;
  });
  return formDialog({
    title: "Create a room",
    fields: [title, id, privacy],
    submit: "Create room",
    onSubmit: async (form) => {
      const name = titleInput.value.trim();
      const slug = idInput.value.trim();
      if (!name) throw new Error("Give the room a name.");
      if (!/^[a-z0-9_-]{1,64}$/.test(slug)) {
        throw new Error("The address may only hold a-z, 0-9, - and _.");
      }
      const isPrivate = form.elements.privacy.value === "private";
      await onCreate(slug, name, isPrivate);
    },
  });
}

export function browseDialog(rooms, onJoin) {
  const list = h("ul", { class: "browse-list" });
  if (rooms.length === 0) {
    list.append(
      h("li", { class: "browse-empty", text: "You are in every public room already." }),
    );
  }
  for (const room of rooms) {
    const button = h("button", { type: "button", class: "button small", text: "Join" });
    button.setAttribute("aria-label", `Join ${room.title}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await onJoin(room.id);
        dialog().close();
      } catch (exc) {
        button.disabled = false;
        button.textContent = "Retry";
        button.title = exc.message;
      }
    });
    const count = room.lastSeq === 1 ? "1 message" : `${room.lastSeq} messages`;
    list.append(
      h(
        "li",
        { class: "browse-item" },
        h("span", { class: "nav-icon" }, icon("hash")),
        h(
          "span",
          { class: "browse-text" },
          h("strong", { text: room.title }),
          h("small", { text: `${room.id} · ${count}` }),
        ),
        button,
      ),
    );
  }
  return formDialog({
    title: "Public rooms",
    intro: "Rooms anyone on this server can join.",
    fields: [list],
    submit: "Done",
    onSubmit: async () => {},
  });
}

export function directDialog(known, onStart) {
  const listId = "dm-suggestions";
  const input = field({
    id: "dm-user",
    label: "Username",
    required: true,
    maxlength: "32",
    list: listId,
    spellcheck: "false",
    autocapitalize: "none",
    autocomplete: "off",
  });
  const datalist = h(
    "datalist",
    { id: listId },
    ...known.map((name) => h("option", { value: name })),
  );
  return formDialog({
    title: "Start a direct message",
    intro: "Talk one to one with someone on this server.",
    fields: [input, datalist],
    submit: "Start",
    onSubmit: async (form) => {
      const name = form.elements["dm-user"].value.trim().toLowerCase();
      if (!name) throw new Error("Type the username of the person to write to.");
      await onStart(name);
    },
  });
}

export function addMemberDialog(room, onAdd) {
  const done = h("p", { class: "form-success", role: "status" });
  const input = field({
    id: "member-user",
    label: "Username",
    required: true,
    maxlength: "32",
    spellcheck: "false",
    autocapitalize: "none",
    autocomplete: "off",
  });
  return formDialog({
    title: `Add people to ${room.title}`,
    intro: "Members of a private room can read all of its history.",
    fields: [input, done],
    submit: "Add",
    onSubmit: async (form) => {
      const element = form.elements["member-user"];
      const name = element.value.trim().toLowerCase();
      if (!name) throw new Error("Type a username.");
      await onAdd(name);
      done.textContent = `${name} was added.`;
      element.value = "";
      element.focus();
      // Stay open to add more people.
      return KEEP_OPEN;
    },
  });
}

export function confirmDialog({ title, intro, submit, onConfirm }) {
  return formDialog({
    title,
    intro,
    fields: [],
    submit,
    danger: true,
    onSubmit: onConfirm,
  });
}
