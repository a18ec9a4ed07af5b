// The controller of a signed-in session: it feeds server frames and REST
// answers into the Store, sends what the person does, and asks the views
// to render.
//
// Recovery. After every (re)connect: fetch the room list, rejoin each room
// with `since` = the highest stream position received (so the server
// replays every missed message, edit and deletion before the join's ok),
// then resend messages still pending under their original client_id
// (the server stores each client_id once, so a resend never duplicates).

import { Api, ChatError, RETRYABLE } from "./api.js";
import { Connection } from "./connection.js";
import { h, icon, iconButton, text, avatar } from "./dom.js";
import { lastSeen, typingLine } from "./format.js";
import { PAGE, Store } from "./state.js";
import { setupThemeToggle } from "./theme.js";
import { Composer } from "./views/composer.js";
import {
  addMemberDialog,
  browseDialog,
  confirmDialog,
  createRoomDialog,
  directDialog,
} from "./views/dialogs.js";
import { Members } from "./views/members.js";
import { presenceDot, roomHref, Sidebar } from "./views/sidebar.js";
import { Timeline } from "./views/timeline.js";

const $ = (id) => document.getElementById(id);

const TYPING_EXPIRY = 10_000; // in case an "ended" frame is lost with a link
const AWAY_AFTER = 60_000; // hidden this long: tell others we are away
const ROOMS_POLL = 15_000; // the server does not announce new rooms to us
const BANNER_DELAY = 800; // a quick first connect shows no banner

export const SESSION_KEY = "serenchat.session";
const LAST_ROOM_KEY = "serenchat.room";
const MEMBERS_KEY = "serenchat.members";

export class App {
  /** session: {user, token}; onSignOut(notice): back to the sign-in form. */
  constructor(session, onSignOut) {
    this.session = session;
    this.me = session.user.username;
    this.onSignOut = onSignOut;
    this.store = new Store(this.me);
    this.api = new Api(
      () => this.session.token,
      () => this.expired(),
    );
    this.everOpen = false;
    this.renderQueued = false;
    this.bannerTimer = 0;
    this.awayTimer = 0;
    this.away = false;
    this.memberRefresh = new Map();
    this.clientIds = clientIdSource();
  }

  start() {
    $("app").hidden = false;
    this.buildViews();
    this.bindUi();

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.conn = new Connection(`${scheme}//${location.host}/ws`, this.session.token);
    this.conn.addEventListener("open", () => this.onOpen());
    this.conn.addEventListener("state", () => this.onState());
    this.conn.addEventListener("frame", (event) => this.onFrame(event.detail));
    this.conn.addEventListener("unauthorized", () => this.expired());
    this.conn.start();

    // The list can show while the socket is still connecting.
    this.refreshRooms().catch(() => {});
    this.poll = setInterval(() => {
      if (this.conn.isOpen && document.visibilityState === "visible") {
        this.refreshRooms().catch(() => {});
      }
    }, ROOMS_POLL);
    // Relative times ("5 min ago") and day labels age.
    this.tick = setInterval(() => this.render(), 60_000);
  }

  // Views and page-level controls.

  buildViews() {
    const store = this.store;
    this.sidebar = new Sidebar(
      { rooms: $("room-list"), dms: $("dm-list"), dmEmpty: $("dm-empty") },
      store,
    );
    this.members = new Members(
      { panel: $("members"), list: $("member-list"), heading: $("members-heading") },
      store,
    );
    this.timeline = new Timeline(
      {
        scroller: $("scroller"),
        list: $("messages"),
        status: $("history-status"),
        pill: $("new-pill"),
      },
      store,
      {
        loadOlder: (room) => this.loadOlder(room),
        edit: (room, message, value) => this.edit(room, message, value),
        remove: (room, message) => this.confirmDelete(room, message),
        retry: (room, pending) => this.retry(room, pending),
        discard: (room, pending) => this.discard(room, pending),
        readable: () => this.markRead(),
        focusComposer: () => this.composer.focus(),
      },
    );
    this.composer = new Composer(
      { form: $("composer"), input: $("composer-input"), label: $("composer-label") },
      {
        send: (value) => this.send(value),
        typing: (room, active) => this.sendTyping(room, active),
        editLast: () => this.editLast(),
      },
    );

    iconButton($("send"), "send");
    iconButton($("open-drawer"), "menu");
    iconButton($("close-drawer"), "close");
    iconButton($("close-members"), "close");
    iconButton($("toggle-members"), "users");
    iconButton($("logout"), "logout");
    iconButton($("browse-rooms"), "compass");
    iconButton($("create-room"), "plus");
    iconButton($("new-dm"), "plus");
    $("add-member").replaceChildren(
      icon("userPlus", "icon small"),
      h("span", { text: "Add people" }),
    );
    $("banner").querySelector(".banner-icon").replaceChildren(icon("wifi"));
    setupThemeToggle($("theme-toggle"));

    $("me-avatar").replaceWith(avatar(this.me, "small"));
    text($("me-name"), this.me);
  }

  bindUi() {
    $("logout").addEventListener("click", () => this.signOut());
    $("create-room").addEventListener("click", () =>
      createRoomDialog((id, title, isPrivate) => this.createRoom(id, title, isPrivate)),
    );
    $("browse-rooms").addEventListener("click", async () => {
      await this.refreshRooms().catch(() => {});
      browseDialog(this.store.discoverable(), (id) => this.joinPublic(id));
    });
    $("new-dm").addEventListener("click", () =>
      directDialog(this.knownUsers(), (name) => this.startDirect(name)),
    );
    $("add-member").addEventListener("click", () => {
      const room = this.store.active;
      if (room) addMemberDialog(room, (name) => this.addMember(room, name));
    });
    $("banner-retry").addEventListener("click", () => this.conn.retryNow());

    // Drawer (narrow screens) and member panel.
    $("open-drawer").addEventListener("click", () => this.setDrawer(true));
    $("close-drawer").addEventListener("click", () => this.setDrawer(false));
    $("scrim").addEventListener("click", () => {
      this.setDrawer(false);
      this.setMembers(false);
    });
    $("toggle-members").addEventListener("click", () =>
      this.setMembers(!this.membersOpen),
    );
    $("close-members").addEventListener("click", () => {
      this.setMembers(false);
      $("toggle-members").focus();
    });
    const saved = localStorage.getItem(MEMBERS_KEY);
    this.setMembers(
      saved ? saved === "shown" && !narrow() : window.innerWidth >= 1100,
      false,
    );

    document.addEventListener("keydown", (event) => this.onGlobalKey(event));
    window.addEventListener("hashchange", () => {
      if (location.hash.startsWith("#room/")) this.openFromHash();
    });
    document.querySelector(".skip-link").addEventListener("click", (event) => {
      event.preventDefault();
      this.composer.focus();
    });
    document.addEventListener("visibilitychange", () => this.onVisibility());
    window.addEventListener("focus", () => {
      this.markRead();
      if (this.conn.isOpen) this.refreshRooms().catch(() => {});
    });
  }

  onGlobalKey(event) {
    if (event.key === "Escape") {
      if (document.querySelector("#app.drawer-open")) {
        this.setDrawer(false);
        $("open-drawer").focus();
      } else if (this.membersOpen && narrow()) {
        this.setMembers(false);
        $("toggle-members").focus();
      }
      return;
    }
    // Alt+ArrowUp / Alt+ArrowDown: previous or next conversation.
    if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      const { rooms, dms } = this.store.lists();
      const order = [...rooms, ...dms];
      const index = order.findIndex((room) => room.id === this.store.activeId);
      const next = order[index + (event.key === "ArrowUp" ? -1 : 1)];
      if (next) {
        event.preventDefault();
        this.openRoom(next.id);
      }
    }
  }

  setDrawer(open) {
    const app = $("app");
    app.classList.toggle("drawer-open", open);
    $("open-drawer").setAttribute("aria-expanded", String(open));
    $("scrim").hidden = !(open || (this.membersOpen && narrow()));
    // While the drawer covers the page, the page is out of reach.
    $("main").inert = open && narrow();
    if (open) $("sidebar").querySelector("a, button")?.focus();
  }

  setMembers(open, remember = true) {
    this.membersOpen = open;
    $("members").hidden = !open;
    $("app").classList.toggle("members-open", open);
    $("toggle-members").setAttribute("aria-expanded", String(open));
    $("scrim").hidden =
      !(open && narrow()) && !$("app").classList.contains("drawer-open");
    if (remember && !narrow()) {
      localStorage.setItem(MEMBERS_KEY, open ? "shown" : "hidden");
    }
    if (open) {
      this.members.render();
      if (narrow()) $("close-members").focus();
    }
  }

  onVisibility() {
    clearTimeout(this.awayTimer);
    if (document.visibilityState === "visible") {
      if (this.away) this.setStatus("online");
      this.markRead();
    } else {
      this.awayTimer = setTimeout(() => this.setStatus("away"), AWAY_AFTER);
    }
  }

  setStatus(status) {
    this.away = status === "away";
    if (!this.conn.isOpen) return;
    this.conn.request({ type: "presence", status }).catch(() => {});
    this.store.setPresence(this.me, status, null);
    this.render();
  }

  // Connection.

  onState() {
    const conn = this.conn;
    const banner = $("banner");
    clearTimeout(this.bannerTimer);
    clearInterval(this.countdown);
    if (conn.state === "open") {
      if (!banner.hidden) {
        this.setBanner("ok", "Connected again.", false);
        this.bannerTimer = setTimeout(() => (banner.hidden = true), 2500);
      }
      return;
    }
    // Anything else means the rooms' live subscriptions are gone.
    for (const room of this.store.rooms.values()) {
      room.joined = false;
      room.joining = null;
      for (const timer of room.typing.values()) clearTimeout(timer);
      room.typing.clear();
    }
    this.render();

    if (conn.state === "waiting") {
      const lost = this.everOpen ? "Connection lost." : "Cannot reach the server.";
      this.setBanner(
        "warn",
        `${lost} Messages you write will be sent once it is back.`,
        true,
      );
      const paint = () => {
        const seconds = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
        text(
          $("banner-text").querySelector(".countdown"),
          ` Retrying in ${seconds} s.`,
        );
      };
      paint();
      this.countdown = setInterval(paint, 1000);
    } else if (conn.state === "connecting") {
      const countdown = $("banner-text").querySelector(".countdown");
      if (!banner.hidden && banner.dataset.kind === "warn" && countdown) {
        // Keep the message; a new announcement per attempt would only be
        // noise for screen reader users.
        text(countdown, " Reconnecting…");
      } else if (this.everOpen) {
        this.setBanner("warn", "Reconnecting…", false);
      } else {
        const show = () => this.setBanner("warn", "Connecting…", false);
        this.bannerTimer = setTimeout(show, BANNER_DELAY);
      }
    }
  }

  setBanner(kind, message, retry) {
    const banner = $("banner");
    banner.hidden = false;
    banner.dataset.kind = kind;
    // The countdown changes every second; keep it out of the live region's
    // announcements.
    $("banner-text").replaceChildren(
      message,
      h("span", { class: "countdown", "aria-hidden": "true" }),
    );
    $("banner-retry").hidden = !retry;
  }

  async onOpen() {
    this.everOpen = true;
    // The server says how long a message may be; the boxes follow it.
    const longest = this.conn.limits?.max_message_length;
    if (longest) {
      $("composer-input").maxLength = longest;
      this.timeline.maxLength = longest;
    }
    this.store.setPresence(this.me, this.away ? "away" : "online", null);
    if (this.away) {
      this.conn.request({ type: "presence", status: "away" }).catch(() => {});
    }
    try {
      await this.refreshRooms();
    } catch {
      // The joins below still run for the rooms we know.
    }
    await this.joinAll();
    for (const room of this.store.rooms.values()) {
      for (const pending of room.pending.values()) {
        if (!pending.failed) this.deliver(room, pending);
      }
    }
    this.render();
  }

  joinAll() {
    // Every room we belong to, and the open one (a public room looked at
    // before the connection came up).
    const rooms = [...this.store.rooms.values()].filter(
      (room) => room.member || room === this.store.active,
    );
    return Promise.all(rooms.map((room) => this.join(room).catch(() => {})));
  }

  /** Subscribe to a room, replaying what we missed since our position. */
  join(room) {
    if (room.joined) return Promise.resolve();
    if (room.joining) return room.joining;
    const joining = this.subscribe(room).finally(() => {
      // A lost link may have cleared this already and a newer join begun.
      if (room.joining === joining) room.joining = null;
    });
    room.joining = joining;
    return joining;
  }

  async subscribe(room) {
    // Without a position yet, a page fetched over REST marks where we are:
    // replay from its newest message so that nothing falls in between. A
    // page still on its way must arrive first, or the join could not know.
    await room.loadingLatest?.catch(() => {});
    const newest = room.messages.length
      ? room.messages[room.messages.length - 1].seq
      : 0;
    const since = room.position ?? (room.loaded ? newest : null);
    const frame = { type: "join", room: room.id };
    if (since !== null) frame.since = since;
    const reply = await this.conn.request(frame);
    if (since !== null && reply.last_seq < since) {
      // The server's stream is shorter than what we saw: its database was
      // replaced. Start this room afresh.
      room.reset();
      if (room === this.store.active) this.timeline.show(room);
    }
    room.update(reply.room);
    room.advance(reply.last_seq);
    if (reply.members) {
      this.setMembersOf(room, reply.members);
    } else {
      // A large room: the server leaves the member list out of the reply.
      this.refreshMembers(room);
    }
    room.joined = true;
    room.member = true;
    if (room === this.store.active) {
      if (!room.loaded) this.loadLatest(room);
      this.markRead();
    }
    this.render();
  }

  setMembersOf(room, list) {
    for (const member of list) {
      this.store.setPresence(member.username, member.status, member.last_seen);
    }
    // Receipt positions only move forward: keep what frames told us.
    const known = room.members;
    room.setMembers(list);
    for (const [name, member] of room.members) {
      const before = known.get(name);
      if (!before) continue;
      member.read_seq = Math.max(member.read_seq ?? 0, before.read_seq ?? 0);
      member.delivered_seq = Math.max(
        member.delivered_seq ?? 0,
        before.delivered_seq ?? 0,
      );
    }
  }

  /** Ask for the member list again (someone new spoke up). */
  refreshMembers(room) {
    if (this.memberRefresh.has(room.id)) return;
    const timer = setTimeout(async () => {
      try {
        const { members } = await this.api.members(room.id);
        this.setMembersOf(room, members);
        this.render();
      } catch {
        // The next event from the newcomer asks again.
      } finally {
        this.memberRefresh.delete(room.id);
      }
    }, 300);
    this.memberRefresh.set(room.id, timer);
  }

  async refreshRooms() {
    const { rooms } = await this.api.rooms();
    this.store.setRooms(rooms);
    if (this.conn.isOpen) {
      for (const room of this.store.rooms.values()) {
        if (room.member && !room.joined) this.join(room).catch(() => {});
      }
    }
    if (!this.store.active || !this.store.active.member) this.openFromHash();
    this.render();
  }

  // Frames from the server.

  onFrame(frame) {
    const room = frame.room ? this.store.room(frame.room) : null;
    switch (frame.type) {
      case "message":
        if (room) this.onMessage(room, frame.message);
        break;
      case "update":
        if (room) {
          room.advance(frame.seq);
          room.change(frame.message);
          if (frame.kind === "delete" && this.timeline.editingId === frame.message.id) {
            this.timeline.stopEditing(false);
          }
        }
        break;
      case "removed":
        if (room) this.onRemoved(room);
        break;
      case "member":
        if (frame.user === this.me && frame.change === "added") {
          this.refreshRooms().catch(() => {});
        } else if (room) {
          this.refreshMembers(room);
        }
        break;
      case "presence":
        this.store.setPresence(frame.user, frame.status, frame.last_seen);
        break;
      case "typing":
        if (room) this.onTyping(room, frame.user, frame.active);
        break;
      case "receipt":
        if (!room) break;
        if (!room.receipt(frame.user, frame.read_seq, frame.delivered_seq)) {
          this.refreshMembers(room);
        }
        if (frame.user === this.me) room.markRead(frame.read_seq);
        break;
      case "delivery":
        if (!room) break;
        for (const [user, seq] of Object.entries(frame.delivered)) {
          if (!room.receipt(user, undefined, seq)) this.refreshMembers(room);
        }
        break;
      default:
        return; // a frame from a newer server: ignore it
    }
    this.render();
  }

  onMessage(room, message) {
    room.advance(message.seq);
    const isNew = !room.byId.has(message.id);
    room.put(message);
    if (message.sender === this.me) {
      if (message.client_id) room.pending.delete(message.client_id);
      return;
    }
    if (!isNew) return;
    if (!room.members.has(message.sender)) this.refreshMembers(room);
    this.onTyping(room, message.sender, false);
    room.countUnread(message);
    if (room === this.store.active) {
      this.timeline.noteIncoming(1);
      this.announce(`${message.sender}: ${message.text}`);
      queueMicrotask(() => this.markRead());
    }
  }

  onRemoved(room) {
    room.member = false;
    room.joined = false;
    if (room.private) this.store.rooms.delete(room.id);
    if (room === this.store.active) {
      this.announce(`You are no longer a member of ${room.title}.`);
      this.store.activeId = null;
      this.openFromHash(true);
    }
  }

  onTyping(room, user, active) {
    clearTimeout(room.typing.get(user));
    if (active) {
      room.typing.set(
        user,
        setTimeout(() => {
          room.typing.delete(user);
          this.render();
        }, TYPING_EXPIRY),
      );
    } else {
      room.typing.delete(user);
    }
  }

  // Rooms.

  openFromHash(fallback = false) {
    const match = /^#room\/(.+)$/.exec(location.hash);
    const wanted = match ? decodeURIComponent(match[1]) : null;
    const store = this.store;
    // After a removal only fall back to rooms we surely still belong to.
    const candidates = fallback
      ? ["general", store.lists().rooms[0]?.id]
      : [
          wanted,
          localStorage.getItem(LAST_ROOM_KEY),
          "general",
          store.lists().rooms[0]?.id,
        ];
    for (const id of candidates) {
      const room = id ? store.room(id) : null;
      if (room && (room.member || room.kind === "public")) {
        this.openRoom(room.id);
        return;
      }
    }
  }

  openRoom(id) {
    const room = this.store.room(id);
    if (!room) return;
    const changed = this.store.activeId !== id;
    this.store.activeId = id;
    localStorage.setItem(LAST_ROOM_KEY, id);
    if (location.hash !== roomHref(id)) {
      history.replaceState(null, "", roomHref(id));
    }
    if (changed) {
      this.timeline.show(room);
      this.composer.setRoom(
        room,
        `Message ${room.isDirect ? this.store.nameOf(room) : `#${room.title}`}`,
      );
    }
    if (this.conn.isOpen && !room.joined) this.join(room).catch(() => {});
    else if (!room.loaded) this.loadLatest(room);
    // Reopening the same room (a room list refresh does) must not shut a
    // drawer the person has just opened.
    if (changed) this.setDrawer(false);
    this.render();
    this.markRead();
    // Moving to a room puts the person in its message box (not on phones,
    // where that would pop the keyboard up over the messages).
    if (changed && !narrow()) this.composer.focus();
  }

  /** Fetch the newest page of a room (once); resolves when it is in. */
  loadLatest(room) {
    if (room.loaded) return Promise.resolve();
    room.loadingLatest ??= this.fetchLatest(room).finally(() => {
      room.loadingLatest = null;
      this.render();
    });
    return room.loadingLatest;
  }

  async fetchLatest(room) {
    try {
      // Everything up to our position; live messages above it arrive on
      // the subscription, so together there is no gap.
      const before = room.position === null ? null : room.position + 1;
      const { messages } = await this.api.history(room.id, before, PAGE);
      for (const message of messages) room.put(message);
      room.loaded = true;
      room.hasOlder = messages.length === PAGE;
    } catch {
      setTimeout(() => {
        if (room === this.store.active) this.loadLatest(room);
      }, 2000);
    }
  }

  async loadOlder(room) {
    if (room.loadingOlder || !room.hasOlder) return;
    room.loadingOlder = true;
    this.render();
    try {
      const { messages } = await this.api.history(room.id, room.oldestSeq, PAGE);
      for (const message of messages) room.put(message);
      room.hasOlder = messages.length === PAGE;
    } finally {
      room.loadingOlder = false;
      this.render();
    }
  }

  async createRoom(id, title, isPrivate) {
    const info = await this.api.createRoom(id, title, isPrivate);
    this.store.addRoom(info);
    this.openRoom(info.id);
  }

  async joinPublic(id) {
    const room = this.store.room(id);
    if (!room) throw new ChatError("not_found", "That room no longer exists.");
    room.member = true;
    if (this.conn.isOpen) await this.join(room);
    this.openRoom(id);
  }

  async startDirect(name) {
    if (name === this.me) {
      throw new ChatError("bad_request", "That is you. Pick someone else.");
    }
    let info;
    try {
      info = await this.api.direct(name);
    } catch (exc) {
      if (exc.code === "not_found") {
        throw new ChatError("not_found", `There is nobody called ${name} here.`);
      }
      throw exc;
    }
    const room = this.store.addRoom(info);
    if (this.conn.isOpen) await this.join(room).catch(() => {});
    this.openRoom(room.id);
  }

  async addMember(room, name) {
    try {
      await this.api.addMember(room.id, name);
    } catch (exc) {
      if (exc.code === "not_found") {
        throw new ChatError("not_found", `There is nobody called ${name} here.`);
      }
      throw exc;
    }
    const { members } = await this.api.members(room.id);
    this.setMembersOf(room, members);
    this.render();
  }

  knownUsers() {
    const names = new Set(this.store.presence.keys());
    for (const room of this.store.rooms.values())
      for (const name of room.members.keys()) names.add(name);
    names.delete(this.me);
    return [...names].sort();
  }

  // Writing.

  send(value) {
    const room = this.store.active;
    if (!room) return;
    const pending = {
      client_id: this.clientIds(),
      text: value,
      createdAt: Date.now(),
      failed: null,
      inflight: false,
    };
    room.pending.set(pending.client_id, pending);
    this.timeline.toBottom();
    this.render();
    this.deliver(room, pending);
  }

  /**
   * Send a pending message. A lost link leaves it for the next open; other
   * passing failures retry after a growing pause. Retries reuse the
   * client_id, so the server stores the message once whatever happens.
   */
  deliver(room, pending) {
    if (!this.conn.isOpen || pending.inflight) return;
    pending.inflight = true;
    this.conn
      .request({
        type: "send",
        room: room.id,
        text: pending.text,
        client_id: pending.client_id,
      })
      .then((reply) => {
        room.put(reply.message);
        room.pending.delete(pending.client_id);
      })
      .catch((error) => {
        if (!RETRYABLE.has(error.code)) {
          pending.failed = error.message;
        } else if (error.code !== "disconnected") {
          pending.attempts = (pending.attempts ?? 0) + 1;
          const pause = Math.min(30_000, 1000 * 2 ** pending.attempts);
          setTimeout(() => {
            if (room.pending.get(pending.client_id) === pending) {
              this.deliver(room, pending);
            }
          }, pause);
        }
      })
      .finally(() => {
        pending.inflight = false;
        this.render();
      });
  }

  retry(room, pending) {
    pending.failed = null;
    this.render();
    this.deliver(room, pending);
  }

  discard(room, pending) {
    room.pending.delete(pending.client_id);
    this.render();
    this.composer.focus();
  }

  sendTyping(room, active) {
    if (!this.conn.isOpen) return;
    this.conn.request({ type: "typing", room: room.id, active }).catch(() => {});
  }

  async edit(room, message, value) {
    try {
      const reply = await this.conn.request({
        type: "edit",
        room: room.id,
        message_id: message.id,
        text: value,
      });
      room.put(reply.message);
      this.render();
    } catch (error) {
      this.announce(`The message was not edited: ${error.message}`, true);
    }
  }

  editLast() {
    const room = this.store.active;
    if (!room) return false;
    for (let i = room.messages.length - 1; i >= 0; i -= 1) {
      const message = room.messages[i];
      if (message.sender === this.me && !message.deleted) {
        this.timeline.startEditing(message.id);
        return true;
      }
    }
    return false;
  }

  confirmDelete(room, message) {
    const preview =
      message.text.length > 80 ? `${message.text.slice(0, 80)}…` : message.text;
    return confirmDialog({
      title: "Delete this message?",
      intro: `“${preview}” will be removed for everyone. This cannot be undone.`,
      submit: "Delete",
      onConfirm: async () => {
        const reply = await this.conn.request({
          type: "delete",
          room: room.id,
          message_id: message.id,
        });
        room.put(reply.message);
        this.render();
      },
    });
  }

  // Reading.

  /** Tell the server we read the open room, if the newest part is in view. */
  markRead() {
    const room = this.store.active;
    if (!room || !room.joined || room.position === null) return;
    if (document.visibilityState !== "visible" || !this.timeline.stuck) return;
    if (!room.markRead(room.position)) return;
    this.conn
      .request({ type: "read", room: room.id, seq: room.position })
      .catch(() => {});
    this.render();
  }

  announce(message, urgent = false) {
    const region = $("announcer");
    region.setAttribute("aria-live", urgent ? "assertive" : "polite");
    region.append(
      h("p", { text: message.length > 300 ? `${message.slice(0, 300)}…` : message }),
    );
    while (region.childElementCount > 5) region.firstElementChild.remove();
  }

  // Rendering, batched: many frames in one burst cost one render.

  render() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    const run = () => {
      if (!this.renderQueued) return;
      this.renderQueued = false;
      this.renderNow();
    };
    requestAnimationFrame(run);
    // Hidden tabs get no animation frames; still keep the state current.
    setTimeout(run, 100);
  }

  renderNow() {
    const store = this.store;
    const room = store.active;
    this.sidebar.render();
    this.timeline.render();
    if (this.membersOpen) this.members.render();
    this.renderHeader(room);
    this.renderTyping(room);

    const me = store.status(this.me);
    text(
      $("me-status"),
      me === "away" ? "Away" : this.conn?.isOpen ? "Online" : "Offline",
    );
    $("me-status").dataset.status = this.conn?.isOpen ? me : "offline";

    const unread = store.totalUnread();
    const name = room ? (room.isDirect ? store.nameOf(room) : `#${room.title}`) : "";
    const count = unread ? `(${unread}) ` : "";
    document.title = `${count}${name ? `${name} · ` : ""}SerenChat`;
    $("open-drawer").classList.toggle("has-unread", unread > (room?.unread ?? 0));
  }

  renderHeader(room) {
    const store = this.store;
    const title = $("room-title");
    const subtitle = $("room-subtitle");
    if (!room) {
      text(title, "SerenChat");
      subtitle.replaceChildren();
      $("add-member").hidden = true;
      return;
    }
    const name = store.nameOf(room);
    const lead = room.isDirect
      ? null
      : icon(room.kind === "private" ? "lock" : "hash", "icon title-icon");
    title.replaceChildren(...[lead, h("span", { text: name })].filter(Boolean));

    const count = room.members.size;
    const people = count === 1 ? "1 member" : `${count} members`;
    if (room.isDirect) {
      const peer = store.peerOf(room);
      const status = store.status(peer);
      const seen = store.presence.get(peer)?.last_seen;
      const words =
        status === "offline"
          ? seen
            ? `Offline · ${lastSeen(seen)}`
            : "Offline"
          : status === "away"
            ? "Away"
            : "Online";
      subtitle.replaceChildren(presenceDot(status, seen), h("span", { text: words }));
    } else {
      const kind = room.kind === "private" ? "Private room" : "Public room";
      const owner = room.owner ? ` · created by ${room.owner}` : "";
      subtitle.replaceChildren(`${kind} · ${count ? people : "…"}${owner}`);
    }
    $("add-member").hidden = !(room.kind === "private" && room.owner === this.me);
  }

  renderTyping(room) {
    const line = $("typing");
    const users = room
      ? [...room.typing.keys()].filter((u) => u !== this.me).sort()
      : [];
    const message = typingLine(users);
    if (line.textContent !== message) {
      line.replaceChildren(
        message
          ? h(
              "span",
              { class: "typing-dots", "aria-hidden": "true" },
              h("i"),
              h("i"),
              h("i"),
            )
          : "",
        message,
      );
    }
    line.classList.toggle("active", Boolean(message));
  }

  // Leaving.

  signOut(notice = "") {
    this.conn.stop();
    clearInterval(this.poll);
    clearInterval(this.tick);
    this.onSignOut(notice);
  }

  expired() {
    if (this.expiring) return;
    this.expiring = true;
    this.signOut("Your session has ended. Please sign in again.");
  }
}

function narrow() {
  return window.matchMedia("(max-width: 760px)").matches;
}

/** Fresh client_ids: a random prefix per page load and a counter. */
function clientIdSource() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const prefix = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  let counter = 0;
  return () => `web-${prefix}-${(counter += 1)}`;
}
