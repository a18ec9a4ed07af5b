"""Validation rules shared by every entry point (pure functions)."""

from __future__ import annotations

import hashlib
import re

from serenchat.domain.errors import BadRequest, TooLarge

ROOM_ID = re.compile(r"[a-z0-9_-]{1,64}")
USERNAME = re.compile(r"[a-z0-9_.-]{1,32}")
CLIENT_ID_MAX = 64
TITLE_MAX = 200
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
DIRECT_PREFIX = "dm-"


def room_id(value: object) -> str:
    """Return ``value`` if it is a room slug, else raise BadRequest."""
    if not isinstance(value, str) or not ROOM_ID.fullmatch(value):
        raise BadRequest("room id must be 1 to 64 characters of a-z, 0-9, '-' and '_'")
    return value


def username(value: object) -> str:
    """Normalise a username to lower case and check its characters.

    Usernames are case-insensitive: ``Alice`` and ``alice`` are one account,
    so that nobody can impersonate another by case.
    """
    if not isinstance(value, str):
        raise BadRequest("username must be a string")
    name = value.strip().lower()
    if not USERNAME.fullmatch(name):
        raise BadRequest(
            "username must be 1 to 32 characters of a-z, 0-9, '.', '-' and '_'"
        )
    return name


def password(value: object) -> str:
    if not isinstance(value, str) or not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise BadRequest(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
    return value


def title(value: str | None, default: str) -> str:
    if value is None:
        return default
    value = value.strip()
    if not value or len(value) > TITLE_MAX:
        raise BadRequest(f"title must be 1 to {TITLE_MAX} characters")
    _storable(value, "title")
    return value


def message_text(value: object, max_length: int) -> str:
    """Check a message text: a non-blank string of at most ``max_length``."""
    if not isinstance(value, str):
        raise BadRequest("text must be a string")
    if len(value) > max_length:
        raise TooLarge(f"text is longer than {max_length} characters")
    if not value.strip():
        raise BadRequest("text must not be empty")
    _storable(value, "text")
    return value


def _storable(value: str, what: str) -> None:
    # PostgreSQL rejects NUL in text and no database stores a lone UTF-16
    # surrogate (JSON can carry one as an escape), so refuse both up front.
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode") from None


def client_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= CLIENT_ID_MAX:
        raise BadRequest(f"client_id must be a string of 1 to {CLIENT_ID_MAX}")
    _storable(value, "client_id")
    return value


def direct_room_id(a: str, b: str) -> str:
    """The id of the direct message room of two usernames, order-free.

    A digest keeps the id a valid slug whatever the usernames hold, and the
    ``dm-`` prefix is reserved so no ordinary room can take it.
    """
    first, second = sorted((a, b))
    digest = hashlib.blake2b(f"{first}\0{second}".encode(), digest_size=10)
    return DIRECT_PREFIX + digest.hexdigest()
