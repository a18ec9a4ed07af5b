"""Argon2id password hashing, kept off the event loop."""

from __future__ import annotations

import asyncio
import functools

import argon2
from argon2.exceptions import InvalidHashError, VerificationError


@functools.cache
def _decoy() -> str:
    # Verified when a login names an unknown user, so that the answer takes
    # as long as for a known one and does not reveal which usernames exist.
    # Made on first need: hashing costs a third of a second at import.
    return argon2.PasswordHasher().hash("decoy password for timing parity")


class PasswordHasher:
    """Hash and verify passwords in a worker thread.

    Argon2 is deliberately slow (tens of milliseconds); run on the loop, it
    would stall every connection of the node during each login.
    """

    def __init__(self) -> None:
        self._argon = argon2.PasswordHasher()

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, hashed, password)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._argon.verify(hashed or _decoy(), password) and bool(hashed)
        except (VerificationError, InvalidHashError):
            return False
