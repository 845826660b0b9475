"""Errors a user can cause are values; errors we cause are logged and masked.

- `UserFailure` carries `UserError`s (field, code, message); mutations turn it into the
  payload's `userErrors`.
- `PublicError` is a GraphQL error meant for the client (NOT_FOUND, FORBIDDEN, …).
- Anything else escaping a resolver is logged with the request id and reaches the client
  only as "Internal server error" with that id.
"""

from __future__ import annotations

import logging
import math
import secrets
import sqlite3
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

from asyncpg.exceptions import QueryCanceledError
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

log = logging.getLogger("parley.errors")

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def new_request_id() -> str:
    return secrets.token_hex(8)


class Code(StrEnum):
    INVALID = "INVALID"
    REQUIRED = "REQUIRED"
    TOO_LONG = "TOO_LONG"
    NOT_FOUND = "NOT_FOUND"
    # Removed for good (an export file erased with a contact in it).
    GONE = "GONE"
    FORBIDDEN = "FORBIDDEN"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    TAKEN = "TAKEN"
    READ_ONLY = "READ_ONLY"
    CONFLICT = "CONFLICT"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    IDENTITY_VERIFICATION_FAILED = "IDENTITY_VERIFICATION_FAILED"
    # A deactivated agent tried to log in (with the right password).
    DEACTIVATED = "DEACTIVATED"
    # Segment rules.
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_OPERATOR = "INVALID_OPERATOR"
    INVALID_VALUE = "INVALID_VALUE"
    TOO_DEEP = "TOO_DEEP"
    TOO_MANY_CONDITIONS = "TOO_MANY_CONDITIONS"
    # Conversations.
    CONSENT_REQUIRED = "CONSENT_REQUIRED"
    NOT_ALLOWED = "NOT_ALLOWED"
    # Proactive messages: an action their status does not offer (pause a draft, …).
    INVALID_TRANSITION = "INVALID_TRANSITION"
    # CRM sync: the change log was pruned past the cursor; resync in full.
    CURSOR_EXPIRED = "CURSOR_EXPIRED"
    # The embedded database stayed locked by another process: nothing was written; retry.
    BUSY = "BUSY"
    # Too many requests (core/ratelimit.py): nothing was done; retry after `retryAfter` seconds.
    RATE_LIMITED = "RATE_LIMITED"
    # The operation costs more than MAX_QUERY_COST (core/cost.py): nothing ran.
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    # A statement ran longer than DATABASE_STATEMENT_TIMEOUT_SECONDS and the database stopped it.
    TIMEOUT = "TIMEOUT"
    # Apollo's automatic persisted queries (runtime/persisted.py): the hash is unknown (send
    # the query with it), or this server keeps none (send queries in full).
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"


class DatabaseBusy(Exception):
    """Another process held SQLite's write lock longer than we wait (core/sqlite.py).
    Nothing was written: a request answers BUSY (HTTP 503, Retry-After), a job is retried."""

    retry_after_seconds = 1

    def __init__(self, waited: float) -> None:
        super().__init__(f"the database stayed locked by another process for {waited:.1f} s; nothing was written")


def is_statement_timeout(exc: BaseException | None) -> bool:
    """Whether the database stopped a statement that ran too long: asyncpg's
    QueryCanceledError (PostgreSQL's statement_timeout) or sqlite3's "interrupted" (the
    progress handler of core/sqlite.py), however Tortoise or a resolver wrapped it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, QueryCanceledError):
            return True
        if (
            isinstance(exc, sqlite3.OperationalError)
            and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT
        ):
            return True
        # Tortoise wraps the driver's exception as its first argument (and raises from it).
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = inner or exc.__cause__ or exc.__context__
    return False


def statement_timeout_message() -> str:
    from core.config import settings

    return f"The query took longer than {settings.database_statement_timeout_seconds:g} s and was stopped; narrow it."


@dataclass(frozen=True)
class UserError:
    field: list[str] | None
    code: Code
    message: str


class UserFailure(Exception):
    """Raised anywhere below a mutation; the mutation answers with these userErrors."""

    def __init__(self, *errors: UserError) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = list(errors)

    @classmethod
    def of(cls, field: str | list[str] | None, code: Code, message: str) -> UserFailure:
        path = [field] if isinstance(field, str) else field
        return cls(UserError(field=path, code=code, message=message))


class PublicError(GraphQLError):
    """A GraphQL error whose message is safe to show the client."""

    def __init__(self, message: str, code: Code) -> None:
        super().__init__(message, extensions={"code": code.value})


class RateLimited(PublicError):
    """A rate limit refused the request (core/ratelimit.py): nothing was done. The error
    carries the wait, `extensions: {"code": "RATE_LIMITED", "retryAfter": 12}`; a response
    whose only errors are these answers HTTP 429 with Retry-After."""

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        unit = "second" if self.retry_after == 1 else "seconds"
        super().__init__(f"{what}: try again in {self.retry_after} {unit}.", Code.RATE_LIMITED)
        assert self.extensions is not None
        self.extensions["retryAfter"] = self.retry_after


class QueryTooCostly(PublicError):
    """An operation over the budget (core/cost.py), refused before anything ran:
    `extensions: {"code": "QUERY_TOO_COSTLY", "cost": 31200, "budget": 10000}`."""

    def __init__(self, cost: int, budget: int) -> None:
        super().__init__(f"This query costs {cost:,}; the budget is {budget:,} a request.", Code.QUERY_TOO_COSTLY)
        assert self.extensions is not None
        self.extensions.update(cost=cost, budget=budget)


def forbidden(message: str = "You are not allowed to do this.") -> PublicError:
    return PublicError(message, Code.FORBIDDEN)


def unauthenticated() -> PublicError:
    return PublicError("Authentication required.", Code.UNAUTHENTICATED)


def _is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class MaskUnexpectedErrors(MaskErrors):
    """Masks only errors we did not mean to show, and logs each with its request id."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_is_unexpected)

    def _process_result(self, result: object) -> None:
        # The base class tests a runtime Protocol with isinstance on every result: 3-4 % of
        # a subscription delivery's CPU. An attribute read does the same job.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def mask(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """The errors as this extension lets them out (for runtime/http.py's plain path)."""
        return self._process_errors(errors)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        request_id = request_id_var.get()
        if isinstance(error.original_error, DatabaseBusy):
            log.warning("%s in %s (request %s)", error.original_error, ".".join(map(str, error.path or [])), request_id)
            return GraphQLError(
                message="The database is busy and nothing was written; try again in a moment.",
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={
                    "code": Code.BUSY.value,
                    "retryAfter": DatabaseBusy.retry_after_seconds,
                    "requestId": request_id,
                },
            )
        if is_statement_timeout(error.original_error):
            log.warning("statement timeout in %s (request %s)", ".".join(map(str, error.path or [])), request_id)
            return GraphQLError(
                message=statement_timeout_message(),
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": Code.TIMEOUT.value, "requestId": request_id},
            )
        log.error(
            "unexpected error in %s (request %s)",
            ".".join(map(str, error.path or [])) or "operation",
            request_id,
            exc_info=error.original_error,
        )
        return GraphQLError(
            message=f"Internal server error (request id {request_id}).",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL", "requestId": request_id},
        )
