"""Password hashing and signed access tokens."""

from serenchat.auth.passwords import PasswordHasher
from serenchat.auth.tokens import TokenAuthority, load_secret

__all__ = ["PasswordHasher", "TokenAuthority", "load_secret"]
