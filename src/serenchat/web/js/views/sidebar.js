// The room list and the direct messages, with unread badges and presence.

import { attr, avatar, h, icon, reconcile, text } from "../dom.js";
import { lastSeen as seenText } from "../format.js";

export function roomHref(id) {
  return `#room/${encodeURIComponent(id)}`;
}

const STATUS_WORDS = { online: "online", away: "away", offline: "offline" };

/** "online", "away", or "offline, last seen 5 min ago". */
export function statusWords(status, lastSeen) {
  return status === "offline" && lastSeen
    ? `offline, ${seenText(lastSeen)}`
    : STATUS_WORDS[status];
}

/**
 * A presence dot. It is decoration for assistive technology: every place
 * that shows one also says the status in words.
 */
export function presenceDot(status, lastSeen) {
  return h("span", {
    class: `presence ${status}`,
    dataset: { status },
    title: statusWords(status, lastSeen),
    "aria-hidden": "true",
  });
}

export class Sidebar {
  constructor(els, store) {
    this.els = els; // {rooms, dms, dmEmpty}
    this.store = store;
    this.items = new Map(); // room id -> {li, sig}
  }

  render() {
    const { rooms, dms } = this.store.lists();
    reconcile(
      this.els.rooms,
      rooms.map((room) => this.item(room)),
    );
    reconcile(
      this.els.dms,
      dms.map((room) => this.item(room)),
    );
    this.els.dmEmpty.hidden = dms.length > 0;
    const live = new Set([...rooms, ...dms].map((room) => room.id));
    for (const id of this.items.keys()) if (!live.has(id)) this.items.delete(id);
  }

  item(room) {
    const store = this.store;
    const name = store.nameOf(room);
    const peer = room.isDirect ? store.peerOf(room) : null;
    const status = peer ? store.status(peer) : null;
    const lastSeen = peer ? store.presence.get(peer)?.last_seen : null;
    const unread = room.unread;
    const active = room.id === store.activeId;
    const sig = JSON.stringify([name, room.kind, status, lastSeen, unread, active]);

    let entry = this.items.get(room.id);
    if (!entry) {
      const link = h("a", { class: "nav-item", href: roomHref(room.id) });
      entry = { li: h("li", {}, link), link, sig: null };
      this.items.set(room.id, entry);
    }
    if (entry.sig === sig) return entry.li;
    entry.sig = sig;

    const { link } = entry;
    link.dataset.room = room.id;
    // One clear name instead of the pieces read one by one.
    const kind = peer
      ? `direct message, ${statusWords(status, lastSeen)}`
      : room.kind === "private"
        ? "private room"
        : "room";
    attr(link, "aria-label", `${name}, ${kind}${unread ? `, ${unread} unread` : ""}`);
    attr(link, "aria-current", active ? "page" : null);
    link.classList.toggle("unread", unread > 0);

    let lead;
    if (peer) {
      lead = h(
        "span",
        { class: "nav-avatar" },
        avatar(peer, "small"),
        presenceDot(status, lastSeen),
      );
    } else {
      const glyph = room.kind === "private" ? "lock" : "hash";
      lead = h(
        "span",
        {
          class: "nav-icon",
          title: room.kind === "private" ? "Private room" : "Public room",
        },
        icon(glyph),
      );
    }
    const label = h("span", { class: "nav-name" });
    text(label, name);
    const badge =
      unread > 0
        ? h("span", {
            class: "badge",
            dataset: { unread: String(unread) },
            text: unread > 99 ? "99+" : String(unread),
          })
        : null;
    link.replaceChildren(...[lead, label, badge].filter(Boolean));
    return entry.li;
  }
}
