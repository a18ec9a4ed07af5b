// The member list of the open room: presence, owner, last seen.

import { avatar, h, reconcile } from "../dom.js";
import { lastSeen as seenText } from "../format.js";
import { presenceDot } from "./sidebar.js";

const ORDER = { online: 0, away: 1, offline: 2 };

export class Members {
  constructor(els, store) {
    this.els = els; // {panel, list, heading}
    this.store = store;
    this.items = new Map(); // username -> {li, sig}
  }

  render() {
    const room = this.store.active;
    if (!room) {
      this.els.list.replaceChildren();
      return;
    }
    const store = this.store;
    const members = [...room.members.values()]
      .map((m) => ({ ...m, status: store.status(m.username) }))
      .sort(
        (a, b) =>
          ORDER[a.status] - ORDER[b.status] || a.username.localeCompare(b.username),
      );
    const online = members.filter((m) => m.status !== "offline").length;
    this.els.heading.replaceChildren(
      "Members",
      h("span", { class: "count", text: ` ${online} of ${members.length} online` }),
    );
    reconcile(
      this.els.list,
      members.map((m) => this.item(m)),
    );
  }

  item(member) {
    const lastSeen =
      this.store.presence.get(member.username)?.last_seen ?? member.last_seen;
    const me = member.username === this.store.me;
    const detail = member.status === "offline" ? seenText(lastSeen) : member.status;
    const sig = JSON.stringify([member.status, detail, member.owner, me]);
    let entry = this.items.get(member.username);
    if (!entry) {
      entry = {
        li: h("li", { class: "member", dataset: { user: member.username } }),
        sig: null,
      };
      this.items.set(member.username, entry);
    }
    if (entry.sig !== sig) {
      entry.sig = sig;
      entry.li.dataset.status = member.status;
      entry.li.replaceChildren(
        h(
          "span",
          { class: "nav-avatar" },
          avatar(member.username, "small"),
          presenceDot(member.status, lastSeen),
        ),
        h(
          "span",
          { class: "member-text" },
          h(
            "span",
            { class: "member-name" },
            member.username,
            me ? h("span", { class: "you-tag", text: "you" }) : null,
            member.owner ? h("span", { class: "owner-tag", text: "owner" }) : null,
          ),
          h("span", { class: "member-detail", text: detail }),
        ),
      );
    }
    return entry.li;
  }
}
