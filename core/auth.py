"""Credentials: argon2 password hashes, signed bearer tokens, API keys.

>>> token = issue_token(TokenKind.AGENT, workspace_id=1, subject_id=7)
>>> decode_token(token).subject_id
7
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from core.config import settings
from core.signing import same_secret

T = TypeVar("T")

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
    # The agent's token version, or the channel's session version, when it was issued: a
    # token whose version is no longer current is refused (resolvers/auth.py).
    version: int = 0
    # For contact sessions: the contact's session version when it was issued (bumped by
    # endContactSession, a merge, an identity upgrade: resolvers/contacts.py).
    contact_version: int = 0


# argon2 keeps a core busy for tens of milliseconds a call: on the event loop, a few
# logins at once would stall every other request. So hashes run in threads of their own
# (argon2-cffi releases the GIL), at most PASSWORD_HASH_CONCURRENCY at once; a caller
# waiting for its turn waits on a semaphore, so a client that leaves costs nothing more.
_threads = ThreadPoolExecutor(max_workers=settings.password_hash_concurrency, thread_name_prefix="argon2")
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def _off_the_loop(work: Callable[[], T]) -> T:
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = asyncio.Semaphore(settings.password_hash_concurrency)
    async with turn:
        return await loop.run_in_executor(_threads, work)


async def hash_password(password: str) -> str:
    return await _off_the_loop(lambda: _hasher.hash(password))


async def verify_password(password_hash: str, password: str) -> bool:
    return await _off_the_loop(lambda: _verify(password_hash, password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


# A hash checked when no agent matched, so a wrong e-mail costs as long as a wrong password.
DUMMY_PASSWORD_HASH = _hasher.hash(secrets.token_urlsafe(16))


def issue_token(
    kind: TokenKind,
    *,
    workspace_id: int,
    subject_id: int,
    channel_id: int | None = None,
    version: int = 0,
    contact_version: int | None = None,
) -> str:
    ttl = settings.agent_token_ttl_seconds if kind is TokenKind.AGENT else settings.contact_token_ttl_seconds
    now = int(time.time())
    payload = {
        "aud": _AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "typ": kind.value,
        "ws": workspace_id,
        "sub": str(subject_id),
        "ver": version,
    }
    if channel_id is not None:
        payload["ch"] = channel_id
    if contact_version is not None:
        payload["cver"] = contact_version
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
            version=int(payload.get("ver", 0)),
            contact_version=int(payload.get("cver", 0)),
        )
        expires = float(payload["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None
    if len(_verified) >= VERIFIED_TOKENS_MAX:
        del _verified[next(iter(_verified))]
    _verified[token] = (claims, expires)
    return claims


# Password reset tokens: signed like session tokens but of their own type (never accepted
# as a bearer token), carrying the agent's token version, which the reset bumps: so a
# reset token works once, and not after a logout, a password change or another reset.
_RESET_TYPE = "password-reset"


def issue_reset_token(*, workspace_id: int, agent_id: int, version: int, ttl_seconds: int) -> str:
    now = int(time.time())
    payload = {
        "aud": _AUDIENCE,
        "iat": now,
        "exp": now + ttl_seconds,
        "typ": _RESET_TYPE,
        "ws": workspace_id,
        "sub": str(agent_id),
        "ver": version,
    }
    return jwt.encode(payload, settings.secret_key, algorithm="HS256")


def decode_reset_token(token: str) -> Claims | None:
    """The claims of a valid, unexpired reset token (kind AGENT), or None."""
    try:
        payload = jwt.decode(token, settings.secret_key, algorithms=["HS256"], audience=_AUDIENCE)
        if payload["typ"] != _RESET_TYPE:
            return None
        return Claims(
            kind=TokenKind.AGENT,
            workspace_id=int(payload["ws"]),
            subject_id=int(payload["sub"]),
            version=int(payload["ver"]),
        )
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None


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
