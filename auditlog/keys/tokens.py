"""API tokens: `al_<prefix>_<secret>`. The prefix is shown and indexed; only a hash is stored."""

import hashlib
import secrets

TOKEN_PREFIX = "al_"


def token_generate() -> tuple[str, str]:
    """Return (prefix, token)."""
    prefix = secrets.token_hex(4)
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
