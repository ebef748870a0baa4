"""Secrets: generating home/operator tokens and enrolment codes, and hashing them for storage.

Tokens and codes are random with at least 128 bits (tokens) or 60 bits (codes) of entropy, so a
fast keyed hash is the right tool (a password hash like argon2 protects low-entropy secrets and
would only slow every websocket connect). Only SHA-256 digests are stored; the plain value is
shown once, when it is created, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

TOKEN_BYTES: Final = 32
ENROLMENT_CODE_GROUPS: Final = 3
ENROLMENT_CODE_GROUP_LENGTH: Final = 4
_CODE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone
_BEARER_PREFIX: Final = "bearer "


def new_token() -> str:
    """Return a new random bearer token (URL-safe, 43 characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_enrolment_code() -> str:
    """Return a one-time enrolment code such as ``K7QM-2XWD-P9RT`` (60 bits)."""
    groups = (
        "".join(secrets.choice(_CODE_ALPHABET) for _ in range(ENROLMENT_CODE_GROUP_LENGTH))
        for _ in range(ENROLMENT_CODE_GROUPS)
    )
    return "-".join(groups)


def normalise_enrolment_code(code: str) -> str:
    """Return a code as typed by a person in canonical form (upper case, dashes, no spaces)."""
    compact = "".join(ch for ch in code.upper() if ch.isalnum())
    size = ENROLMENT_CODE_GROUP_LENGTH
    return "-".join(compact[i : i + size] for i in range(0, len(compact), size))


def hash_secret(secret: str) -> str:
    """Return the hex SHA-256 digest stored in place of a token or code."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, stored_hash: str) -> bool:
    """Compare a presented secret with a stored digest in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization or not authorization.lower().startswith(_BEARER_PREFIX):
        return None
    token = authorization[len(_BEARER_PREFIX) :].strip()
    return token or None
