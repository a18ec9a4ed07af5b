// The WebSocket at /ws: hello, requests with ids, events, and reconnecting.
//
// Contract for users of Connection:
// - "open" fires after every successful hello (first connect and each
//   reconnect); rejoin rooms and resend unacknowledged messages then.
// - request() resolves with the `ok` frame or rejects with a ChatError; on
//   a lost connection every outstanding request rejects with `disconnected`
//   (the request may or may not have been carried out).
// - "frame" carries every event frame (message, update, presence, ...).
// - "state" fires on every change of `state`; while it is "waiting",
//   `retryAt` is when the next attempt starts.
// - "unauthorized" fires when the server refuses the token (close 4401);
//   the connection then stays down.

import { ChatError } from "./api.js";

// Backoff between attempts: doubles from BACKOFF_MIN up to BACKOFF_MAX, and
// each wait is drawn from the upper half of its step ("equal jitter") so
// that clients cut off together do not come back together.
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 30_000;
const REQUEST_TIMEOUT = 20_000;
// A link that silently died (no close frame, no TCP reset) only shows up
// when something is sent. Ping after this much silence.
const IDLE_PING = 20_000;
const PING_TIMEOUT = 8_000;

const CLOSE_UNAUTHORIZED = 4401;

export function backoff(attempt) {
  const step = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt);
  return step / 2 + Math.random() * (step / 2);
}

export class Connection extends EventTarget {
  #url;
  #token;
  #ws = null;
  #nextId = 1;
  #pending = new Map();
  #attempt = 0;
  #retryTimer = 0;
  #heartbeat = 0;
  #lastFrame = 0;
  #stopped = true;

  /** "idle", "connecting", "open", "waiting" (to retry) or "stopped". */
  state = "idle";
  retryAt = 0;
  user = null;

  constructor(url, token) {
    super();
    this.#url = url;
    this.#token = token;
    this.onOnline = () => this.retryNow();
  }

  get isOpen() {
    return this.state === "open";
  }

  start() {
    this.#stopped = false;
    window.addEventListener("online", this.onOnline);
    this.#connect();
  }

  /** Close for good (logging out); outstanding requests are rejected. */
  stop() {
    this.#stopped = true;
    window.removeEventListener("online", this.onOnline);
    clearTimeout(this.#retryTimer);
    const ws = this.#ws;
    this.#drop();
    if (ws) ws.close(1000, "bye");
    this.#setState("stopped");
  }

  /** Skip the rest of the backoff wait. */
  retryNow() {
    if (this.state !== "waiting") return;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  /** Send a request; resolve with its `ok` frame, reject with ChatError. */
  request(frame, timeout = REQUEST_TIMEOUT) {
    if (!this.isOpen) {
      return Promise.reject(new ChatError("disconnected", "Not connected."));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new ChatError("timeout", "The server did not answer in time."));
      }, timeout);
      this.#pending.set(id, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  #setState(state) {
    this.state = state;
    this.dispatchEvent(new Event("state"));
  }

  #connect() {
    this.#setState("connecting");
    const ws = new WebSocket(this.#url);
    this.#ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "hello", token: this.#token, id: "hello" }));
    });
    ws.addEventListener("message", (event) => this.#receive(ws, event.data));
    ws.addEventListener("close", (event) => this.#closed(ws, event.code));
  }

  #receive(ws, data) {
    if (ws !== this.#ws) return;
    this.#lastFrame = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }

    if (frame.id === "hello") {
      if (frame.type === "ok") {
        this.user = frame.user;
        this.limits = frame.limits ?? null;
        this.#attempt = 0;
        this.#startHeartbeat();
        this.#setState("open");
        this.dispatchEvent(new Event("open"));
      }
      // A refused hello is followed by close 4401, handled in #closed.
      return;
    }

    const waiter =
      frame.type === "ok" || frame.type === "error"
        ? this.#pending.get(frame.id)
        : null;
    if (waiter) {
      this.#pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "ok") waiter.resolve(frame);
      else waiter.reject(new ChatError(frame.code, frame.message));
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  #closed(ws, code) {
    if (ws !== this.#ws) return;
    this.#drop();
    if (this.#stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      this.#stopped = true;
      this.#setState("stopped");
      this.dispatchEvent(new Event("unauthorized"));
      return;
    }
    const delay = backoff(this.#attempt);
    this.#attempt += 1;
    this.retryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
    this.#setState("waiting");
  }

  /** Forget the current socket and fail what was waiting on it. */
  #drop() {
    clearInterval(this.#heartbeat);
    this.#ws = null;
    for (const waiter of this.#pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new ChatError("disconnected", "The connection was lost."));
    }
    this.#pending.clear();
  }

  #startHeartbeat() {
    clearInterval(this.#heartbeat);
    this.#lastFrame = Date.now();
    this.#heartbeat = setInterval(() => {
      if (Date.now() - this.#lastFrame < IDLE_PING || !this.isOpen) return;
      const ws = this.#ws;
      this.request({ type: "ping" }, PING_TIMEOUT).catch((error) => {
        // No answer: treat the link as dead rather than wait for TCP to
        // notice, which can take minutes.
        if (error.code === "timeout" && ws === this.#ws) {
          ws.close();
          this.#closed(ws, 1006);
        }
      });
    }, IDLE_PING / 4);
  }
}
