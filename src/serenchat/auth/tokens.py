"""Signed access tokens (JWT, HS256).

A token's ``sub`` is the username. Tokens minted by another application
with the same secret are accepted the same way, which lets an existing site
sign its users in to chat without passwords; ``exp`` is checked when
present, so such issuers should set one.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

import jwt

from serenchat.domain.errors import Unauthorized

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
SECRET_FILE = "jwt-secret"


def load_secret(data_dir: Path) -> str:
    """Read the signing secret from the data directory, creating it once."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass

    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: if two processes start at once, one writes and both read it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    log.info("generated token signing secret", extra={"path": str(path)})
    return secret


class TokenAuthority:
    """Issue and verify access tokens."""

    def __init__(self, secret: str, ttl: float) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self._ttl = ttl

    def issue(self, username: str) -> str:
        now = int(time.time())
        claims = {"sub": username, "iat": now, "exp": now + int(self._ttl)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: object) -> str:
        """Return the token's subject; raise Unauthorized if it is not valid."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("a token is required")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not valid") from None
        return str(claims["sub"])
