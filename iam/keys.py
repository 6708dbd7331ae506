"""Random keys and their stored digests (session keys, CSRF tokens, access tokens)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_session_key() -> str:
    # 40 hex characters: CVAT's Token.key is limited to 40 characters.
    return secrets.token_hex(20)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def new_access_token() -> str:
    return "cvat_" + secrets.token_urlsafe(32)


def new_password(length: int = 20) -> str:
    return secrets.token_urlsafe(length)[:length]


def digest(key: str) -> str:
    """SHA-256 hex digest. Keys are long random strings, so a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
