// Turning data into words and nodes: times, days, links, lists of names.

import { h } from "./dom.js";

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "numeric",
  minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "full",
  timeStyle: "short",
});
const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  month: "long",
  day: "numeric",
});
const dayYearFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "long",
  year: "numeric",
  month: "long",
  day: "numeric",
});

/** "14:05" or "2:05 PM", in the reader's time zone and locale. */
export function clock(date) {
  return timeFormat.format(date);
}

/** The date and time in full, for tooltips. */
export function fullTime(date) {
  return fullFormat.format(date);
}

/** A key that is equal for two dates on the same local calendar day. */
export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

/** "Today", "Yesterday", or the weekday and date (with year if not this one). */
export function dayLabel(date, now = new Date()) {
  const today = dayKey(now);
  if (dayKey(date) === today) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  const format = date.getFullYear() === now.getFullYear() ? dayFormat : dayYearFormat;
  return format.format(date);
}

/** "last seen 5 min ago", or "offline" for someone never connected. */
export function lastSeen(iso, now = Date.now()) {
  return iso ? `last seen ${ago(iso, now)}` : "offline";
}

/** "5 min ago"-style text for a past time. */
export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

/** "alice", "alice and bob", "alice, bob and carol". */
export function names(list) {
  if (list.length <= 1) return list.join("");
  return `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

/** The typing line for a set of usernames, or "" when nobody types. */
export function typingLine(users) {
  if (users.length === 0) return "";
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length <= 3) return `${names(users)} are typing…`;
  return "Several people are typing…";
}

// A candidate link: a scheme we allow, then anything up to white space or
// characters that cannot appear unescaped in a URL.
const URL_CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that usually ends the sentence rather than the URL.
const TRAILING = ".,;:!?'\")]}";

function trimUrl(raw) {
  let end = raw.length;
  while (end > 0) {
    const ch = raw[end - 1];
    if (!TRAILING.includes(ch)) break;
    // Keep a parenthesis that closes one opened inside the URL, as in
    // https://en.wikipedia.org/wiki/Solarized_(color_scheme).
    if (ch === ")") {
      const body = raw.slice(0, end - 1);
      if (count(body, "(") > count(body, ")")) break;
    }
    end -= 1;
  }
  return [raw.slice(0, end), raw.slice(end)];
}

function count(text, ch) {
  return text.split(ch).length - 1;
}

/** The URL if it parses as http(s), else null. */
export function safeUrl(candidate) {
  try {
    const url = new URL(candidate);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/**
 * The message text as DOM nodes: text nodes, with http and https URLs as
 * links that open in a new tab and tell the target nothing about us.
 */
export function richText(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(URL_CANDIDATE)) {
    const [url, tail] = trimUrl(match[0]);
    const href = safeUrl(url);
    if (!href) continue;
    if (match.index > last) {
      nodes.push(document.createTextNode(text.slice(last, match.index)));
    }
    nodes.push(
      h("a", {
        href,
        target: "_blank",
        rel: "noopener noreferrer",
        class: "link",
        text: url,
      }),
    );
    last = match.index + match[0].length - tail.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}
