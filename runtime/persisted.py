"""Apollo's automatic persisted queries (APQ): a client sends a document's SHA-256 instead
of the document; the first time, we answer PersistedQueryNotFound and it sends both,
which we check and keep in Redis for every API process.

    query = await persisted_query(redis, body.get("extensions"), body.get("query"))

The protocol, as Apollo Client, Apollo Kotlin and Apollo iOS speak it (GET or POST):

    {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}, "variables": …}
    → {"errors": [{"message": "PersistedQueryNotFound",
                   "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}        (HTTP 200)
    {"query": "…", "extensions": {"persistedQuery": {…}}}   → runs, and is kept

A hash that is not the document's is refused (400, INVALID), and so is a version other
than 1. With PERSISTED_QUERY_MAX_DOCUMENTS=0 nothing is kept and a hash alone answers
PersistedQueryNotSupported (clients then send documents in full). Redis holds at most
PERSISTED_QUERY_MAX_DOCUMENTS documents (the oldest registrations go first), each for
PERSISTED_QUERY_TTL_SECONDS after its last registration, and each at most
MAX_DOCUMENT_CHARS long (core/limits.py checks the document like any other).

The answer to a GET naming its query by hash alone (`hash_only_get`) may be cached for
PERSISTED_QUERY_CACHE_SECONDS (`cache_headers`): by the browser alone (`private`) when the
request carried an Authorization header, by any cache (`public`) otherwise; an answer with
errors, never (`no-store`), and PersistedQueryNotFound not either.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from core import keys
from core.config import settings
from core.errors import Code
from core.limits import RequestRejected

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A GET whose hash we did not know must not be cached on the way: the next one, after the
# client registers it, has an answer.
_NOT_CACHED = {"cache-control": "private, no-cache, must-revalidate"}


class PersistedQueryNotFound(RequestRejected):
    def __init__(self) -> None:
        super().__init__(
            "PersistedQueryNotFound", status=200, code=Code.PERSISTED_QUERY_NOT_FOUND.value, headers=_NOT_CACHED
        )


class PersistedQueryNotSupported(RequestRejected):
    def __init__(self) -> None:
        super().__init__(
            "PersistedQueryNotSupported", status=200, code=Code.PERSISTED_QUERY_NOT_SUPPORTED.value, headers=_NOT_CACHED
        )


def _invalid(message: str) -> RequestRejected:
    return RequestRejected(message, code=Code.INVALID.value)


def persisted_hash(extensions: object) -> str | None:
    """The sha256Hash a request's `extensions` names, or None when it asks for no
    persisted query; RequestRejected naming what is wrong with a malformed one."""
    if not isinstance(extensions, dict) or extensions.get("persistedQuery") is None:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict):
        raise _invalid('extensions.persistedQuery must be an object: {"version": 1, "sha256Hash": "<hex>"}.')
    if persisted.get("version") != 1:
        raise _invalid("extensions.persistedQuery.version must be 1 (Apollo's automatic persisted queries).")
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _invalid("extensions.persistedQuery.sha256Hash must be a SHA-256 in 64 lowercase hex digits.")
    return sha


def hash_only_get(method: str, params: Mapping[str, str]) -> bool:
    """A GET whose `extensions` name a persisted query and which sends no `query`."""
    return method == "GET" and "query" not in params and "persistedQuery" in params.get("extensions", "")


def cache_headers(*, private: bool, failed: bool) -> dict[str, str]:
    """The caching headers of a `hash_only_get`'s answer.

    cache_headers(private=True, failed=False)
    # {"cache-control": "private, max-age=60", "vary": "Accept, Authorization"}
    """
    seconds = settings.persisted_query_cache_seconds
    if failed or seconds <= 0:
        return {"cache-control": "no-store"}
    scope = "private" if private else "public"
    # Accept: the media type of the answer depends on it; Authorization: a browser's cache
    # must not answer one user's request with another's.
    return {"cache-control": f"{scope}, max-age={seconds}", "vary": "Accept, Authorization"}


async def persisted_query(redis: Redis, extensions: object, query: object) -> Any:
    """The document a request runs: its `query`, or the one its persisted hash names.
    A query sent with its hash is checked against it; `register` keeps it afterwards."""
    sha = persisted_hash(extensions)
    if sha is None:
        return query
    if settings.persisted_query_max_documents <= 0:
        if isinstance(query, str):
            return query  # a client that sends the document too needs nothing kept
        raise PersistedQueryNotSupported()
    if isinstance(query, str):
        if hashlib.sha256(query.encode()).hexdigest() != sha:
            raise _invalid("extensions.persistedQuery.sha256Hash is not the SHA-256 of the query sent with it.")
        return query
    if query is not None:
        return query  # not a string: the view says why
    found = await redis.get(keys.persisted_query(sha))
    if found is None:
        raise PersistedQueryNotFound()
    return found.decode() if isinstance(found, bytes) else found


async def register(redis: Redis, extensions: object, query: str) -> None:
    """Keeps a valid document sent with its (checked) hash, within the store's bounds."""
    sha = persisted_hash(extensions)
    if sha is None or settings.persisted_query_max_documents <= 0:
        return
    now, ttl, index = time.time(), settings.persisted_query_ttl_seconds, keys.persisted_queries()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(keys.persisted_query(sha), query, ex=ttl)
        pipe.zadd(index, {sha: now})
        pipe.zremrangebyscore(index, "-inf", now - ttl)  # expired documents leave the index
        pipe.zcard(index)
        *_, count = await pipe.execute()
    excess = count - settings.persisted_query_max_documents
    if excess > 0:
        oldest = await redis.zpopmin(index, excess)
        await redis.delete(
            *(keys.persisted_query(member.decode() if isinstance(member, bytes) else member) for member, _ in oldest)
        )
