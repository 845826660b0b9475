"""Attachments as every path needs them (GraphQL uploads, direct uploads, inbound e-mail
and MMS, erasure): a workspace's limits, storing a file under them, linking files to
their message, signed links, and removing files with their contact.

    limits = await policy(workspace_id)
    problem = refused(limits, filename, content_type)          # None, or (code, message)
    stored = await store(workspace_id, chunks, name, type, limit=limits.max_bytes, uploader="agent:7")
    rows = await attach(message, [stored], contact_id)          # in the message's transaction
    url = download_url(row)                                     # signed, expires
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from core.clock import now
from core.config import settings
from core.errors import Code, UserFailure
from core.signing import link_signature, link_valid
from core.storage import new_key, storage
from domain import attachments as da
from models.attachments import Attachment, AttachmentPolicy
from models.conversations import Message


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    content_types: list[str] = field(default_factory=list)


async def policy(workspace_id: int) -> Limits:
    """The workspace's limits: its own policy, else the settings' defaults."""
    row = await AttachmentPolicy.filter(workspace_id=workspace_id).first()
    if row is None:
        return Limits(settings.attachment_max_bytes, list(settings.attachment_content_types))
    return Limits(row.max_bytes, list(row.content_types))


def refused(
    limits: Limits, filename: str, declared_type: str | None, size: int | None = None
) -> tuple[Code, str] | None:
    """(code, message) when a file of this name, declared type and (known) size is refused."""
    content_type = da.media_type(declared_type, filename)
    if content_type is None:
        return Code.INVALID, f"{filename}: the content type is not a media type (such as image/png)."
    problem = da.type_problem(filename, content_type, limits.content_types)
    if problem is not None:
        return Code.NOT_ALLOWED, f"{filename}: {problem}."
    if size is not None and size > limits.max_bytes:
        return Code.TOO_LONG, f"{filename}: a file may be at most {limits.max_bytes} bytes."
    return None


@dataclass
class Stored:
    """A file in the store, not yet linked to a message (its row is made by `attach`)."""

    workspace_id: int
    storage_key: str
    filename: str
    content_type: str
    size: int
    uploader: str


async def store(
    workspace_id: int,
    chunks: AsyncIterator[bytes],
    filename: str,
    declared_type: str | None,
    *,
    limit: int,
    uploader: str,
) -> Stored:
    """Write a file to the store (core.storage.TooLarge past `limit`: nothing kept). The
    caller has checked its name and type with `refused`."""
    name = da.clean_filename(filename)
    key = new_key(workspace_id)
    size = await storage().save(key, chunks, limit=limit)
    content_type = da.media_type(declared_type, name) or da.GENERIC
    return Stored(workspace_id, key, name, content_type, size, uploader)


async def discard(files: Iterable[Stored]) -> None:
    """Files stored for a message that was then refused or never written."""
    await storage().delete(f.storage_key for f in files)


async def attach(message: Message, files: list[Stored], uploads: list[Attachment], contact_id: int) -> list[Attachment]:
    """Rows for stored files, and direct uploads taken, on `message` (in its transaction)."""
    rows = [
        await Attachment.create(
            workspace_id=f.workspace_id,
            message_id=message.id,
            contact_id=contact_id,
            uploader=f.uploader,
            filename=f.filename,
            content_type=f.content_type,
            size=f.size,
            storage_key=f.storage_key,
            stored=True,
        )
        for f in files
    ]
    if uploads:
        taken = await Attachment.filter(id__in=[u.id for u in uploads], message_id=None).update(
            message_id=message.id, contact_id=contact_id
        )
        if taken != len(uploads):  # another message took one meanwhile: this one is rolled back
            raise UserFailure.of("uploadIds", Code.CONFLICT, "An upload was sent with another message meanwhile.")
        for upload in uploads:
            upload.message_id, upload.contact_id = message.id, contact_id
    return rows + uploads


def event_rows(attachments: list[Attachment]) -> list[dict[str, Any]]:
    """Attachments as message events carry them (subscribers read nothing per event)."""
    return [
        {"id": a.id, "filename": a.filename, "contentType": a.content_type, "size": a.size}
        for a in sorted(attachments, key=lambda a: a.id)
    ]


async def by_message(message_ids: list[int]) -> dict[int, list[Attachment]]:
    """The stored attachments of these messages, in upload order (a loader's batch)."""
    found: dict[int, list[Attachment]] = {i: [] for i in message_ids}
    rows = await Attachment.filter(message_id__in=message_ids, stored=True).order_by("message_id", "id")
    for row in rows:
        found[row.message_id or 0].append(row)
    return found


# -- signed links -------------------------------------------------------------------------


def _subject(purpose: str, workspace_id: int, attachment_id: int) -> str:
    return f"{purpose}:{workspace_id}:{attachment_id}"


def signed_link(purpose: str, workspace_id: int, attachment_id: int, ttl: int, now: float | None = None) -> str:
    """/attachments/… (downloads) or /uploads/… (a direct upload's PUT), valid `ttl` seconds."""
    expires = int(time.time() if now is None else now) + ttl
    signature = link_signature(settings.secret_key, _subject(purpose, workspace_id, attachment_id), expires)
    query = urlencode({"expires": expires, "signature": signature})
    return f"{settings.public_url.rstrip('/')}/{purpose}s/{workspace_id}/{attachment_id}?{query}"


def download_url(workspace_id: int, attachment_id: int) -> str:
    return signed_link("attachment", workspace_id, attachment_id, settings.attachment_link_ttl_seconds)


def link_ok(purpose: str, workspace_id: int, attachment_id: int, expires: int, signature: str) -> bool:
    return link_valid(settings.secret_key, _subject(purpose, workspace_id, attachment_id), expires, signature)


# -- uploads no message took ------------------------------------------------------------------

# A direct upload is kept this long for a message to take it; then its row and file go.
UPLOAD_KEPT = timedelta(days=1)
PRUNE_BATCH = 500


async def prune_uploads(older_than: timedelta = UPLOAD_KEPT) -> int:
    """Direct uploads (createUploadUrl) that no message took within `older_than`: their rows,
    then their files; how many uploads were removed. A message taking one meanwhile keeps it (its
    row is deleted only while `message_id` is null; a message whose upload was deleted
    first is refused with CONFLICT)."""
    cutoff, last, removed = now() - older_than, 0, 0
    while (
        batch := await Attachment.filter(message_id=None, created_at__lt=cutoff, id__gt=last)
        .order_by("id")
        .limit(PRUNE_BATCH)
        .values_list("id", "storage_key")
    ):
        ids = [pk for pk, _ in batch]
        last = ids[-1]
        removed += await Attachment.filter(id__in=ids, message_id=None).delete()
        kept = set(await Attachment.filter(id__in=ids).values_list("id", flat=True))
        await storage().delete(str(key) for pk, key in batch if pk not in kept)
    return removed


# -- contacts going away ----------------------------------------------------------------------


async def erase_rows(contact_id: int) -> list[str]:
    """deleteContact, in its transaction: the contact's attachment rows; their storage keys,
    for `storage().delete` once the deletion is committed."""
    keys = [str(k) for k in await Attachment.filter(contact_id=contact_id).values_list("storage_key", flat=True)]
    await Attachment.filter(contact_id=contact_id).delete()
    return keys


async def move(from_contact_id: int, to_contact_id: int) -> None:
    """mergeContacts: the secondary's files are the merged person's files."""
    await Attachment.filter(contact_id=from_contact_id).update(contact_id=to_contact_id)
