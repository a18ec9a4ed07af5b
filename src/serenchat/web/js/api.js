// The REST API under /api/v1 (see docs/protocol.md, section 10).

/**
 * A failure with the server's stable error code (or one of the client's
 * own: `network` when the server cannot be reached, `disconnected` when a
 * WebSocket request was cut off, `timeout` when it got no reply).
 */
export class ChatError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Codes after which the same request may succeed later. */
export const RETRYABLE = new Set([
  "network",
  "disconnected",
  "timeout",
  "unavailable",
  "rate_limited",
  "internal",
]);

export class Api {
  /**
   * token: a function returning the current access token or null.
   * onUnauthorized: called when a signed-in request gets 401.
   */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async call(method, path, body) {
    const headers = { Accept: "application/json" };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";

    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new ChatError("network", "The server cannot be reached.");
    }
    if (response.status === 204) return null;

    let data = null;
    try {
      data = await response.json();
    } catch {
      // A plain-text 500 or a proxy's error page: keep the status only.
    }
    if (!response.ok) {
      const error = data?.error ?? {
        code: response.status >= 500 ? "internal" : "bad_request",
        message: `The server answered ${response.status}.`,
      };
      if (response.status === 401 && token) this.onUnauthorized();
      throw new ChatError(error.code, error.message, response.status);
    }
    return data;
  }

  register(username, password) {
    return this.call("POST", "/auth/register", { username, password });
  }

  login(username, password) {
    return this.call("POST", "/auth/login", { username, password });
  }

  me() {
    return this.call("GET", "/me");
  }

  rooms() {
    return this.call("GET", "/rooms");
  }

  createRoom(id, title, isPrivate) {
    return this.call("POST", "/rooms", { id, title, private: isPrivate });
  }

  members(room) {
    return this.call("GET", `/rooms/${encodeURIComponent(room)}/members`);
  }

  addMember(room, username) {
    const [r, u] = [room, username].map(encodeURIComponent);
    return this.call("PUT", `/rooms/${r}/members/${u}`);
  }

  /** A page of messages, ascending; the newest ones below `before`. */
  history(room, before, limit) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (before !== null && before !== undefined) query.set("before", String(before));
    return this.call("GET", `/rooms/${encodeURIComponent(room)}/messages?${query}`);
  }

  direct(username) {
    return this.call("POST", "/dms", { username });
  }
}
