// What the client knows: rooms, their messages and members, presence.
// No DOM and no I/O here; the controller (app.js) feeds frames in and the
// views read the result.
//
// Stream positions. A room's stream numbers messages, edits and deletions
// with one gap-free counter. `Room.position` is the highest position this
// client received through its live subscription (message and update frames,
// and the join reply's last_seq); it is what a rejoin sends as `since`, so
// it must never move past anything not yet received. Replies to our own
// requests (send, edit, history) therefore never move it.

/** The later of two states of one message: deletion is final, then edits. */
export function later(a, b) {
  if (!a) return b;
  if (!b) return a;
  if (a.deleted !== b.deleted) return a.deleted ? a : b;
  return (b.edited_at ?? "") >= (a.edited_at ?? "") ? b : a;
}

/** The position in a sorted array of messages where seq belongs. */
function slot(list, seq) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export const PAGE = 50;

export class Room {
  constructor(info) {
    this.id = info.id;
    this.messages = []; // confirmed, ascending by seq
    this.byId = new Map();
    // Latest states of messages changed before we loaded them.
    this.changed = new Map();
    // Messages shown before the server stored them, by client_id, in the
    // order they were written.
    this.pending = new Map();
    this.members = new Map();
    this.typing = new Map(); // username -> timer ending the indicator
    this.position = null;
    this.joined = false;
    this.joining = null;
    this.loaded = false; // the newest page has been fetched
    this.loadingLatest = null; // the promise of that fetch while it runs
    this.hasOlder = true;
    this.loadingOlder = false;
    this.lastReadSeq = 0;
    // Unread = unreadBase (counted by the server up to unreadFrom) plus
    // others' messages received above it.
    this.unreadBase = 0;
    this.unreadFrom = 0;
    this.othersAbove = new Set();
    this.update(info);
  }

  /** Take in a room object from the REST API (RoomState or Room). */
  update(info) {
    this.title = info.title;
    this.kind = info.kind;
    this.private = info.private;
    this.owner = info.owner;
    this.lastSeq = Math.max(this.lastSeq ?? 0, info.last_seq ?? 0);
    if ("member" in info) this.member = info.member;
    if ("unread" in info) {
      this.lastReadSeq = Math.max(this.lastReadSeq, info.last_read_seq);
      this.unreadBase = info.unread;
      this.unreadFrom = info.last_seq;
      for (const seq of this.othersAbove) {
        if (seq <= this.unreadFrom) this.othersAbove.delete(seq);
      }
    }
  }

  get isDirect() {
    return this.kind === "direct";
  }

  /** The oldest loaded seq, or null if nothing is loaded. */
  get oldestSeq() {
    return this.messages.length ? this.messages[0].seq : null;
  }

  get unread() {
    const base = this.lastReadSeq >= this.unreadFrom ? 0 : this.unreadBase;
    let extra = 0;
    for (const seq of this.othersAbove) if (seq > this.lastReadSeq) extra += 1;
    return base + extra;
  }

  /** Note a stream position received on the live subscription. */
  advance(seq) {
    if (this.position === null || seq > this.position) this.position = seq;
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  /**
   * Store a message (new or a newer state of a known one). Returns true if
   * anything changed. Never duplicates: messages are keyed by id.
   */
  put(message) {
    const pendingState = this.changed.get(message.id);
    if (pendingState) {
      this.changed.delete(message.id);
      message = later(message, pendingState);
    }
    const known = this.byId.get(message.id);
    if (known) {
      const next = later(known, message);
      if (next === known) return false;
      this.messages[slot(this.messages, next.seq)] = next;
      this.byId.set(next.id, next);
      return true;
    }
    this.messages.splice(slot(this.messages, message.seq), 0, message);
    this.byId.set(message.id, message);
    return true;
  }

  /** Apply an edit or deletion; keep it for later if the message is not here. */
  change(message) {
    // A deleted message no longer counts as unread (as on the server).
    if (message.deleted) this.othersAbove.delete(message.seq);
    if (this.byId.has(message.id)) return this.put(message);
    this.changed.set(message.id, later(this.changed.get(message.id), message));
    return false;
  }

  /** Count a message from someone else towards unread if it is new to us. */
  countUnread(message) {
    if (message.seq > this.unreadFrom && message.seq > this.lastReadSeq) {
      if (!message.deleted) this.othersAbove.add(message.seq);
    }
  }

  markRead(seq) {
    if (seq <= this.lastReadSeq) return false;
    this.lastReadSeq = seq;
    for (const s of this.othersAbove) if (s <= seq) this.othersAbove.delete(s);
    return true;
  }

  /** Forget the stream (after a database reset on the server). */
  reset() {
    this.messages = [];
    this.byId.clear();
    this.changed.clear();
    this.othersAbove.clear();
    this.position = null;
    this.loaded = false;
    this.hasOlder = true;
  }

  /** Replace the members from a join reply or GET members. */
  setMembers(list) {
    this.members = new Map(list.map((m) => [m.username, { ...m }]));
  }

  /** Move a member's receipt positions forward (they never go back). */
  receipt(username, readSeq, deliveredSeq) {
    const member = this.members.get(username);
    if (!member) return false;
    if (readSeq !== undefined) {
      member.read_seq = Math.max(member.read_seq ?? 0, readSeq);
    }
    if (deliveredSeq !== undefined) {
      member.delivered_seq = Math.max(member.delivered_seq ?? 0, deliveredSeq);
    }
    return true;
  }
}

/** The state of one signed-in session. */
export class Store {
  constructor(me) {
    this.me = me;
    this.rooms = new Map();
    this.presence = new Map(); // username -> {status, last_seen}
    this.activeId = null;
  }

  get active() {
    return this.activeId ? (this.rooms.get(this.activeId) ?? null) : null;
  }

  room(id) {
    return this.rooms.get(id) ?? null;
  }

  /** Take in GET /rooms; return the ids of rooms that are new to us. */
  setRooms(list) {
    const fresh = [];
    const seen = new Set();
    for (const info of list) {
      seen.add(info.id);
      const known = this.rooms.get(info.id);
      if (known) known.update(info);
      else {
        this.rooms.set(info.id, new Room(info));
        fresh.push(info.id);
      }
    }
    for (const [id, room] of this.rooms) {
      if (!seen.has(id) && room.private) this.rooms.delete(id);
    }
    return fresh;
  }

  /** Add or refresh one room from a Room object (create, DM, join reply). */
  addRoom(info, member = true) {
    let room = this.rooms.get(info.id);
    if (room) room.update(info);
    else {
      room = new Room({ ...info, member, unread: 0, last_read_seq: 0 });
      this.rooms.set(info.id, room);
    }
    room.member = member || room.member;
    return room;
  }

  /** The other person of a direct room. */
  peerOf(room) {
    if (!room.isDirect) return null;
    for (const name of room.members.keys()) if (name !== this.me) return name;
    return room.title.split(", ").find((n) => n !== this.me) ?? room.title;
  }

  /** A room's name as shown: the peer for a DM, the title otherwise. */
  nameOf(room) {
    return room.isDirect ? this.peerOf(room) : room.title;
  }

  status(username) {
    if (username === this.me) return this.presence.get(username)?.status ?? "online";
    return this.presence.get(username)?.status ?? "offline";
  }

  setPresence(username, status, lastSeen) {
    const known = this.presence.get(username);
    if (known && known.status === status && known.last_seen === lastSeen) return false;
    this.presence.set(username, {
      status,
      last_seen: lastSeen ?? known?.last_seen ?? null,
    });
    return true;
  }

  /** Rooms I belong to, split into rooms and DMs, each sorted for the list. */
  lists() {
    const rooms = [];
    const dms = [];
    for (const room of this.rooms.values()) {
      if (!room.member) continue;
      (room.isDirect ? dms : rooms).push(room);
    }
    rooms.sort((a, b) => a.title.localeCompare(b.title));
    dms.sort((a, b) => this.nameOf(a).localeCompare(this.nameOf(b)));
    return { rooms, dms };
  }

  /** Public rooms I have not joined, for browsing. */
  discoverable() {
    return [...this.rooms.values()]
      .filter((r) => !r.member && r.kind === "public")
      .sort((a, b) => a.title.localeCompare(b.title));
  }

  totalUnread() {
    let total = 0;
    for (const room of this.rooms.values()) if (room.member) total += room.unread;
    return total;
  }

  /**
   * Receipt marks for my message: `state` is "sent", "delivered" or
   * "read"; in a DM it follows the other person, in a room the counts of
   * the other members who got and read it.
   */
  marks(room, message) {
    const others = [...room.members.values()].filter((m) => m.username !== this.me);
    let delivered = 0;
    let read = 0;
    for (const member of others) {
      const readSeq = member.read_seq ?? 0;
      const deliveredSeq = Math.max(member.delivered_seq ?? 0, readSeq);
      if (readSeq >= message.seq) read += 1;
      if (deliveredSeq >= message.seq) delivered += 1;
    }
    const state = read > 0 ? "read" : delivered > 0 ? "delivered" : "sent";
    let label;
    if (room.isDirect) {
      const peer = this.peerOf(room);
      label = {
        sent: "Sent",
        delivered: `Delivered to ${peer}`,
        read: `Read by ${peer}`,
      }[state];
    } else {
      const n = others.length;
      label =
        state === "sent"
          ? "Sent"
          : `Delivered to ${delivered} of ${n}, read by ${read} of ${n}`;
    }
    return { state, read, delivered, others: others.length, label };
  }
}
