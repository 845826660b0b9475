"""Attachments through the API: files sent with sendMessage and startConversation (multipart
uploads, or direct uploads named by id), `createUploadUrl` and its signed PUT route,
`Message.attachments`' loader, the signed download route, and each workspace's policy.

    PUT /uploads/{workspace_id}/{attachment_id}?expires=…&signature=…      (the bytes)
    GET /attachments/{workspace_id}/{attachment_id}?expires=…&signature=… (the download)

Both links are bearer URLs, checked before the database is touched: a wrong, altered or
expired link is 403 whatever it points at. Downloads are always served as attachments
(Content-Disposition: attachment, X-Content-Type-Options: nosniff, a sandboxing CSP): a
browser never renders one in Parley's origin.

Who may send what: an upload is taken only by a message of the principal that made it
(the same agent, API key or contact session); anybody else, and every other workspace, gets
NOT_FOUND. A contact session reaches attachments only through its own conversations'
messages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from core import outbound
from core.config import settings
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import Permission, Principal, PrincipalKind
from core.ratelimit import rate_limits
from core.scoping import Scope
from core.storage import CHUNK, TooLarge, new_key, storage
from domain import attachments as da
from models.attachments import Attachment, AttachmentPolicy
from services import attachments as sa

# What the schema shows of them (it does not import services/).
from services.attachments import Limits as Limits
from services.attachments import download_url as download_url

log = logging.getLogger("parley.attachments")

MAX_RAW_FILENAME = 1000  # longer names are refused, shorter ones cleaned to MAX_FILENAME
MAX_POLICY_TYPES = 100


def uploader_of(principal: Principal) -> str:
    if principal.kind is PrincipalKind.CONTACT:
        return f"contact:{principal.contact_id}"
    if principal.kind is PrincipalKind.AGENT:
        return f"agent:{principal.agent_id}"
    return f"key:{principal.api_key_id}"


async def _count_contact_files(principal: Principal, files: int) -> None:
    if principal.kind is PrincipalKind.CONTACT:
        for _ in range(files):
            await rate_limits.hit(
                "attachments",
                settings.rate_limit_attachments_per_contact,
                str(principal.workspace_id),
                str(principal.contact_id),
                what="Too many files",
            )


# -- files sent with a message ---------------------------------------------------------------


@dataclass
class Incoming:
    """A message's files: stored ones (multipart) and direct uploads it takes."""

    files: list[sa.Stored] = field(default_factory=list)
    uploads: list[Attachment] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.files or self.uploads)


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(CHUNK):
        yield chunk


async def incoming(ctx: Context, files: list[UploadFile] | None, upload_gids: list[str] | None) -> Incoming:
    """Check and store the files of a message about to be sent (UserFailure naming the
    field otherwise: `attachments.<i>`, `uploadIds.<i>`). The caller attaches them in the
    message's transaction (`sa.attach`), or discards them (`sa.discard`) if it fails."""
    principal = ctx.require_principal()
    files, upload_gids = files or [], upload_gids or []
    if not files and not upload_gids:
        return Incoming()
    most = settings.attachments_per_message
    if len(files) + len(upload_gids) > most:
        field_name = "attachments" if files else "uploadIds"
        raise UserFailure.of(field_name, Code.INVALID, f"A message may carry at most {most} files.")
    limits = await sa.policy(principal.workspace_id)
    errors: list[UserError] = []
    for i, upload in enumerate(files):
        problem = sa.refused(limits, upload.filename or "file", upload.content_type, upload.size)
        if problem is not None:
            errors.append(UserError(["attachments", str(i)], *problem))
    taken: list[Attachment] = []
    uploader = uploader_of(principal)
    for i, gid in enumerate(upload_gids):
        row = await ctx.scope.by_global_id(gid, "Attachment", Attachment)
        if row is None or row.uploader != uploader or row.message_id is not None or row in taken:
            errors.append(UserError(["uploadIds", str(i)], Code.NOT_FOUND, "No upload with this id."))
        elif not row.stored:
            errors.append(
                UserError(
                    ["uploadIds", str(i)], Code.INVALID, "Nothing was uploaded yet: PUT the file to its URL first."
                )
            )
        else:
            taken.append(row)
    if errors:
        raise UserFailure(*errors)
    await _count_contact_files(principal, len(files))
    stored: list[sa.Stored] = []
    for i, upload in enumerate(files):
        try:
            stored.append(
                await sa.store(
                    principal.workspace_id,
                    _file_chunks(upload),
                    upload.filename or "file",
                    upload.content_type,
                    limit=limits.max_bytes,
                    uploader=uploader,
                )
            )
        except TooLarge:
            await sa.discard(stored)
            raise UserFailure.of(
                ["attachments", str(i)], Code.TOO_LONG, f"A file may be at most {limits.max_bytes} bytes."
            ) from None
        except BaseException:
            await sa.discard(stored)
            raise
    return Incoming(stored, taken)


@contextlib.asynccontextmanager
async def kept_if_written(files: Incoming) -> AsyncIterator[None]:
    """Around a message's transaction: files stored for it are removed again if it fails."""
    try:
        yield
    except BaseException:
        await sa.discard(files.files)
        raise


# -- files a provider keeps for us (inbound e-mail attachments, MMS media) ------------------


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str | None = None
    content_type: str | None = None


class Unreachable(Exception):
    """A file could not be fetched for now (no answer, 429, 5xx): worth a retry."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index, self.reason = index, reason


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def fetch_files(workspace_id: int, remote: list[RemoteFile]) -> tuple[Incoming, list[dict[str, Any]]]:
    """Fetch and store a provider's files through core/outbound.py (the SSRF-safe client:
    no private addresses, no redirects, a deadline, at most the workspace's largest file
    read). Files the workspace refuses, or that the provider no longer has (4xx), are
    skipped: (stored files, [{"index", "code", "message"}] of the skipped). Unreachable
    when one could not be fetched for now; nothing is kept then."""
    if not remote:
        return Incoming(), []
    limits = await sa.policy(workspace_id)
    stored: list[sa.Stored] = []
    skipped: list[dict[str, Any]] = []
    try:
        for i, item in enumerate(remote):
            name = da.clean_filename(item.filename or item.url.partition("?")[0].rsplit("/", 1)[-1])
            try:
                answer = await outbound.request("GET", item.url, max_bytes=limits.max_bytes + 1)
            except outbound.OutboundError as exc:
                if exc.retryable:
                    raise Unreachable(i, exc.reason) from None
                skipped.append({"index": i, "code": Code.INVALID.value, "message": exc.reason})
                continue
            if answer.status == 429 or answer.status >= 500:
                raise Unreachable(i, answer.summary)
            declared = item.content_type or answer.headers.get("content-type")
            problem = sa.refused(limits, name, declared, len(answer.body))
            if not answer.ok:
                problem = (Code.NOT_FOUND, f"{name}: the provider answered {answer.summary}.")
            if problem is not None:
                skipped.append({"index": i, "code": problem[0].value, "message": problem[1]})
                continue
            stored.append(
                await sa.store(
                    workspace_id, _once(answer.body), name, declared, limit=limits.max_bytes, uploader="inbound"
                )
            )
    except BaseException:
        await sa.discard(stored)
        raise
    return Incoming(stored), skipped


# -- Message.attachments ---------------------------------------------------------------------


def attachments_of(ctx: Context, message_id: int) -> Any:
    """The request's loader of a message's attachments: one query for every message of
    the response."""

    async def batch(ids: list[int]) -> list[list[Attachment]]:
        found = await sa.by_message(ids)
        return [found[i] for i in ids]

    return ctx.loader("attachments.by_message", batch).load(message_id)


# -- direct uploads --------------------------------------------------------------------------


@dataclass
class UploadTicket:
    attachment: Attachment
    url: str
    expires_at: datetime


async def create_upload_url(ctx: Context, filename: str, content_type: str, size: int) -> UploadTicket:
    principal = ctx.require_principal()
    if principal.kind is not PrincipalKind.CONTACT:
        ctx.require(Permission.CONVERSATIONS_WRITE)
    if len(filename) > MAX_RAW_FILENAME:
        raise UserFailure.of("filename", Code.TOO_LONG, f"filename may be at most {MAX_RAW_FILENAME} characters.")
    if len(content_type) > da.MAX_CONTENT_TYPE:
        raise UserFailure.of(
            "contentType", Code.TOO_LONG, f"contentType may be at most {da.MAX_CONTENT_TYPE} characters."
        )
    if size < 1:
        raise UserFailure.of("size", Code.INVALID, "size is the file's length in bytes: at least 1.")
    limits = await sa.policy(principal.workspace_id)
    name = da.clean_filename(filename)
    problem = sa.refused(limits, name, content_type, size)
    if problem is not None:
        code, message = problem
        raise UserFailure.of("size" if code is Code.TOO_LONG else "contentType", code, message)
    await _count_contact_files(principal, 1)
    row = await Attachment.create(
        workspace_id=principal.workspace_id,
        contact_id=principal.contact_id,
        uploader=uploader_of(principal),
        filename=name,
        content_type=da.media_type(content_type, name) or da.GENERIC,
        size=size,
        storage_key=new_key(principal.workspace_id),
    )
    ttl = settings.attachment_upload_ttl_seconds
    url = sa.signed_link("upload", row.workspace_id, row.id, ttl)
    return UploadTicket(row, url, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl))


def _error(status: int, code: Code, message: str) -> Response:
    return JSONResponse(
        {"error": {"code": code.value, "message": message}}, status_code=status, headers={"cache-control": "no-store"}
    )


def _link(request: Request, purpose: str) -> tuple[int, int] | None:
    """(workspace id, attachment id) of a signed link that is valid now, else None."""
    try:
        workspace_id = int(request.path_params["workspace_id"])
        attachment_id = int(request.path_params["attachment_id"])
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        return None
    if not sa.link_ok(purpose, workspace_id, attachment_id, expires, request.query_params.get("signature", "")):
        return None
    return workspace_id, attachment_id


async def upload_endpoint(request: Request) -> Response:
    """PUT /uploads/{workspace_id}/{attachment_id}?expires=…&signature=…: the file's bytes,
    exactly the size given to createUploadUrl."""
    link = _link(request, "upload")
    if link is None:
        return _error(403, Code.FORBIDDEN, "This upload URL is not valid or has expired.")
    row = await Scope(link[0]).get(Attachment, link[1])
    if row is None:
        return _error(404, Code.NOT_FOUND, "No such upload.")
    if row.stored or row.message_id is not None:
        return _error(409, Code.CONFLICT, "This file was uploaded already.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) != row.size:
        return _error(400, Code.INVALID, f"The body must be the {row.size} bytes given to createUploadUrl.")
    try:
        size = await storage().save(row.storage_key, request.stream(), limit=row.size)
    except TooLarge:
        return _error(413, Code.TOO_LONG, f"The body must be the {row.size} bytes given to createUploadUrl.")
    if size != row.size:
        await storage().delete([row.storage_key])
        return _error(400, Code.INVALID, f"The body must be the {row.size} bytes given to createUploadUrl.")
    await Attachment.filter(id=row.id).update(stored=True)
    log.info("attachment %s of workspace %s uploaded (%s bytes)", row.id, row.workspace_id, size)
    return JSONResponse({"ok": True, "size": size}, headers={"cache-control": "no-store"})


async def download_endpoint(request: Request) -> Response:
    """GET /attachments/{workspace_id}/{attachment_id}?expires=…&signature=…"""
    link = _link(request, "attachment")
    if link is None:
        return _error(403, Code.FORBIDDEN, "This download link is not valid or has expired.")
    row = await Scope(link[0]).get(Attachment, link[1])
    if row is None or not row.stored:
        return _error(404, Code.NOT_FOUND, "No such file.")
    try:
        chunks = await storage().open(row.storage_key)
    except FileNotFoundError:
        return _error(404, Code.NOT_FOUND, "No such file.")
    return StreamingResponse(
        chunks,
        media_type=row.content_type,
        headers={
            "content-length": str(row.size),
            "content-disposition": f"attachment; filename*=UTF-8''{quote(row.filename, safe='')}",
            "x-content-type-options": "nosniff",
            "content-security-policy": "default-src 'none'; sandbox",
            "cache-control": "private, max-age=300",
            "referrer-policy": "no-referrer",
        },
    )


# -- the workspace's policy ------------------------------------------------------------------


async def attachment_policy(ctx: Context) -> sa.Limits:
    return await sa.policy(ctx.require_principal().workspace_id)


async def set_policy(ctx: Context, max_bytes: int | None, content_types: list[str] | None) -> sa.Limits:
    """Owners and admins: the largest file (up to ATTACHMENT_MAX_BYTES_CEILING) and the
    allowed types; an omitted value stays."""
    principal = ctx.require(Permission.WORKSPACE_MANAGE)
    current = await sa.policy(principal.workspace_id)
    errors: list[UserError] = []
    ceiling = settings.attachment_max_bytes_ceiling
    if max_bytes is not None and not 1 <= max_bytes <= ceiling:
        errors.append(UserError(["maxBytes"], Code.INVALID, f"maxBytes is 1 to {ceiling}."))
    if content_types is not None:
        if len(content_types) > MAX_POLICY_TYPES:
            errors.append(UserError(["contentTypes"], Code.INVALID, f"At most {MAX_POLICY_TYPES} types."))
        for i, pattern in enumerate(content_types[:MAX_POLICY_TYPES]):
            value = pattern.strip().lower()
            if not da.valid_pattern(value):
                errors.append(
                    UserError(
                        ["contentTypes", str(i)], Code.INVALID, "A media type (image/png) or a pattern (image/*)."
                    )
                )
            elif value in da.REFUSED_TYPES:
                errors.append(
                    UserError(["contentTypes", str(i)], Code.NOT_ALLOWED, f"{value} files are always refused.")
                )
    if errors:
        raise UserFailure(*errors)
    limits = sa.Limits(
        current.max_bytes if max_bytes is None else max_bytes,
        current.content_types if content_types is None else sorted({p.strip().lower() for p in content_types}),
    )
    async with atomic(ctx.outbox):
        await AttachmentPolicy.update_or_create(
            defaults={"max_bytes": limits.max_bytes, "content_types": limits.content_types},
            workspace_id=principal.workspace_id,
        )
    return limits
