"""Encryption at rest for phone numbers and names, and keyed phone hashes.

One Fernet key (RETAIN_USER_DATA_KEY) protects the data. Fernet encrypts with
AES-128-CBC and authenticates with HMAC-SHA256, so every stored value is a
fresh, non-deterministic token. Lookups by phone number (opt-outs) therefore
use a second column: an HMAC-SHA256 of the E.164 number under a key derived
from the data key with HKDF, so the database alone reveals neither.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

# HKDF context for the phone-hash key; changing it invalidates every stored hash.
_HASH_KEY_INFO = b"retain-user phone hash v1"


class DataCipher:
    """Encrypts and decrypts personal data and hashes phone numbers.

    Raises ValueError when the key is not a Fernet key. The key never
    appears in ``repr`` or in any message.
    """

    def __init__(self, data_key: str) -> None:
        raw = _decode_key(data_key)
        self._fernet = Fernet(data_key.encode())
        self._hash_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=_HASH_KEY_INFO
        ).derive(raw)

    def __repr__(self) -> str:
        return "DataCipher(<hidden>)"

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode()

    def phone_hash(self, e164: str) -> bytes:
        """Return the 32-byte keyed hash that finds a number without decrypting."""
        return hmac.new(self._hash_key, e164.encode(), hashlib.sha256).digest()

    def personal_digest(self, phone: str, first_name: str) -> bytes:
        """Return a keyed hash of the encrypted fields, to detect changes."""
        message = f"{phone}\x00{first_name}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).digest()


def _decode_key(data_key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(data_key.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "the data key is not a Fernet key (32 bytes in URL-safe base64); "
            "generate one with load_or_create_data_key or Fernet.generate_key()"
        )
    return raw


def load_or_create_data_key(path: Path) -> str:
    """Return the data key stored at path, creating it (mode 0600) if absent.

    Raises ValueError when the file contains something other than a Fernet key.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key()
        # O_EXCL: if another process created the file first, read theirs below.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(key + b"\n")
            log.info("Created a data key in %s", path)
    key_text = path.read_text().strip()
    _decode_key(key_text)
    return key_text
