"""Encryption at rest of the client secrets Jeisson uses toward utilities' VTNs.

Jeisson must present those secrets, so they cannot be hashed: they are encrypted with Fernet
(``cryptography``) under a key kept outside the database, in the file named by
``JEISSON_SECRET_KEY_FILE`` (default ``~/.config/jeisson/secret.key``, created 0600 on first
use). A stolen database alone does not give the secrets away; they are never logged or returned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE_ENV: Final = "JEISSON_SECRET_KEY_FILE"
DEFAULT_KEY_FILE: Final = Path("~/.config/jeisson/secret.key")
_PRIVATE: Final = 0o600


class SecretBoxError(RuntimeError):
    """The key is missing, unreadable or not the one a secret was sealed with."""


class SecretBox:
    """Seals and opens secrets with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        """Use ``key`` (a Fernet key)."""
        self._fernet = Fernet(key)

    @classmethod
    def from_environment(cls) -> SecretBox:
        """Load the key file (creating it, private, when it does not exist yet)."""
        path = Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(Fernet.generate_key())
            return cls(path.read_bytes().strip())
        except (OSError, ValueError) as err:
            raise SecretBoxError(f"cannot use the secret key file {path}: {err}") from err

    def seal(self, secret: str) -> str:
        """Return ``secret`` encrypted (text, safe to store)."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        """Return a sealed secret in clear."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as err:
            raise SecretBoxError("a stored secret does not open with this key") from err
