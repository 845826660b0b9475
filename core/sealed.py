"""Secrets we must read back ourselves but nobody else may (push providers' private keys),
encrypted at rest with a key derived from SECRET_KEY.

    stored = seal("-----BEGIN PRIVATE KEY-----…")     # 'gAAAAAB…' (Fernet: AES-128-CBC + HMAC-SHA256)
    unseal(stored)                                    # the text again; SealBroken if tampered with
                                                      # or sealed under another SECRET_KEY

The key is HKDF-SHA256 of SECRET_KEY with a label of its own, so it is never the key that
signs tokens. Changing SECRET_KEY makes sealed values unreadable: they must be set again.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.config import settings

LABEL = b"parley sealed secrets v1"


class SealBroken(Exception):
    """A sealed value that cannot be opened: tampered with, or SECRET_KEY changed since."""


@cache
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str) -> str:
    return _fernet(settings.secret_key).encrypt(text.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    try:
        return _fernet(settings.secret_key).decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError) as exc:
        raise SealBroken("cannot be decrypted: SECRET_KEY changed since it was set, or it was altered") from exc
