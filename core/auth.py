"""Credentials: argon2 password hashes, signed bearer tokens, API keys.

    >>> token = issue_token(TokenKind.AGENT, workspace_id=1, subject_id=7)
    >>> decode_token(token).subject_id
    7
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from core.config import settings
from core.signing import same_secret

_hasher = PasswordHasher()
_AUDIENCE = "parley"
API_KEY_PREFIX = "pk_"


class TokenKind(StrEnum):
    AGENT = "agent"
    CONTACT = "contact"


@dataclass(frozen=True)
class Claims:
    kind: TokenKind
    workspace_id: int
    subject_id: int
    # For contact sessions: the channel the session was opened on.
    channel_id: int | None = None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


# A hash checked when no agent matched, so a wrong e-mail costs as long as a wrong password.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


def issue_token(
    kind: TokenKind, *, workspace_id: int, subject_id: int, channel_id: int | None = None
) -> str:
    ttl = (
        settings.agent_token_ttl_seconds
        if kind is TokenKind.AGENT
        else settings.contact_token_ttl_seconds
    )
    now = int(time.time())
    payload = {
        "aud": _AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "typ": kind.value,
        "ws": workspace_id,
        "sub": str(subject_id),
    }
    if channel_id is not None:
        payload["ch"] = channel_id
    return jwt.encode(payload, settings.secret_key, algorithm="HS256")


# Tokens whose signature was verified, with their expiry: the same text has the same
# signature, so a client's next request needs only the expiry checked (PyJWT's decode was
# 6 % of a 50-contact page). Bounded; the oldest entry goes first.
VERIFIED_TOKENS_MAX = 10_000
_verified: dict[str, tuple[Claims, float]] = {}


def decode_token(token: str) -> Claims | None:
    """The claims of a valid token, or None: signature, audience and expiry checked (the
    signature once per token text, the expiry on every call)."""
    known = _verified.get(token)
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[token]
        return None
    try:
        payload = jwt.decode(token, settings.secret_key, algorithms=["HS256"], audience=_AUDIENCE)
        claims = Claims(
            kind=TokenKind(payload["typ"]),
            workspace_id=int(payload["ws"]),
            subject_id=int(payload["sub"]),
            channel_id=payload.get("ch"),
        )
        expires = float(payload["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None
    if len(_verified) >= VERIFIED_TOKENS_MAX:
        del _verified[next(iter(_verified))]
    _verified[token] = (claims, expires)
    return claims


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str  # shown once, never stored
    prefix: str
    key_hash: str


def new_api_key() -> NewApiKey:
    prefix = secrets.token_hex(6)
    plaintext = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, key_hash=hash_api_key(plaintext))


def hash_api_key(plaintext: str) -> str:
    # API keys carry 256 bits of entropy: a fast hash is enough, unlike passwords.
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def api_key_prefix(plaintext: str) -> str | None:
    if not plaintext.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, _ = plaintext[len(API_KEY_PREFIX) :].partition("_")
    return prefix if sep and prefix else None


def api_key_matches(plaintext: str, key_hash: str) -> bool:
    return same_secret(hash_api_key(plaintext), key_hash)
