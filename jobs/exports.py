"""`export_contacts(job_id)`: writes a contact export (a segment or every contact, chosen
columns; or the attribute report) to a CSV file, in bounded memory.

- Contacts are read in keyset batches of EXPORT_BATCH_SIZE by id (the segment's membership
  index for a segment): memory stays flat whatever the workspace's size (two batches at
  most: the next is read while this one is written). Every value is formatted by the
  database (datetimes, booleans, tags, attribute values), so Python only writes global
  ids, neutralises formula cells and hands each batch to the csv writer.
- The file is written beside its final name and renamed when complete: a download never
  sees half a file, and a retried run (arq is at-least-once) simply writes it again.
- Progress goes to the job record (services/job_records.py); cancelJob stops the run at its next
  batch and removes the partial file.
- The export is not a snapshot: contacts created while it runs may be included, contacts
  deleted meanwhile are left out.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import csv
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise import connections
from tortoise.expressions import F
from tortoise.functions import Max

from core.config import settings
from core.db import SqlBuilder
from core.errors import DatabaseBusy
from core.mail import Mail, MailError, MailNotConfigured, send_mail
from core.scoping import encode_global_id
from domain import exports as ex
from models.attachments import Attachment
from models.contacts import AttributeDefinition, Contact, ContactEvent, ContactNote, ContactTag, DeletedContact
from models.conversations import Conversation, Message
from models.job_records import Job, JobKind, JobStatus
from models.segments import SegmentMembership
from services import webhooks
from services.attachments import download_url
from services.exports import ERASED_MESSAGE, EXPORT_KINDS, erased_since, export_path, remove_erased_exports, signed_url
from services.job_records import JobCancelled, JobTracker

log = logging.getLogger("parley.jobs.exports")

# Seconds an export may run: a million contacts take seconds on PostgreSQL, minutes on SQLite.
EXPORT_TIMEOUT = 3600


def _expressions(columns: list[ex.Column], q: SqlBuilder) -> list[str]:
    """One SQL expression per column over `contacts c`, already formatted as text."""
    pg = q.postgres
    out: list[str] = []
    for column in columns:
        if column.kind == "id":
            out.append("c.id")
        elif column.kind == "text":
            out.append(f"c.{column.key}")
        elif column.kind == "boolean":
            out.append(f"CASE WHEN c.{column.key} THEN 'true' ELSE 'false' END")
        elif column.kind == "datetime":
            out.append(
                f"""to_char(c.{column.key} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
                if pg
                else f"strftime('%Y-%m-%dT%H:%M:%SZ', c.{column.key})"
            )
        elif column.kind == "tags":
            out.append(
                "(SELECT string_agg(t.name, ', ' ORDER BY t.name) FROM contact_tags t WHERE t.contact_id = c.id)"
                if pg
                else (
                    "(SELECT group_concat(name, ', ') "
                    "FROM (SELECT t.name FROM contact_tags t WHERE t.contact_id = c.id ORDER BY t.name))"
                )
            )
        elif column.kind == "attribute":
            if pg:
                out.append(f"c.attributes ->> {q.param(column.key)}::text")
            else:
                path = f'$."{column.key}"'
                # JSON true/false read back as 1/0 in SQLite: spell them as PostgreSQL does.
                out.append(
                    f"CASE json_type(c.attributes, {q.param(path)}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                    f"ELSE json_extract(c.attributes, {q.param(path)}) END"
                )
        else:  # pragma: no cover - parse_columns knows no other kind
            raise ValueError(column.kind)
    return out


def batch_query(
    columns: list[ex.Column], workspace_id: int, segment_id: int | None, after: int, limit: int
) -> tuple[str, list[Any]]:
    """The next `limit` contacts with id > `after`: their id, then one value per column."""
    q = SqlBuilder()
    select = ", ".join(["c.id", *_expressions(columns, q)])
    if segment_id is None:
        sql = (
            f"SELECT {select} FROM contacts c WHERE c.workspace_id = {q.param(workspace_id)} "  # noqa: S608
            f"AND c.id > {q.param(after)} ORDER BY c.id LIMIT {q.param(limit)}"
        )
    else:
        sql = (
            f"SELECT {select} FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id "  # noqa: S608
            f"WHERE m.segment_id = {q.param(segment_id)} AND m.contact_id > {q.param(after)} "
            f"AND c.workspace_id = {q.param(workspace_id)} ORDER BY m.contact_id LIMIT {q.param(limit)}"
        )
    return sql, q.params


async def count_rows(workspace_id: int, segment_id: int | None) -> int:
    q = SqlBuilder()
    if segment_id is None:
        sql = f"SELECT count(*) AS n FROM contacts WHERE workspace_id = {q.param(workspace_id)}"  # noqa: S608
    else:
        sql = f"SELECT count(*) AS n FROM segment_memberships WHERE segment_id = {q.param(segment_id)}"  # noqa: S608
    rows = await connections.get("default").execute_query_dict(sql, q.params)
    return int(rows[0]["n"])


def _contact_gid(pk: int) -> str:
    """encode_global_id("Contact", pk), without building a GlobalID per row."""
    return binascii.b2a_base64(b"Contact:%d" % pk, newline=False).decode("ascii")


async def write_csv(
    path: Path,
    columns: list[ex.Column],
    workspace_id: int,
    segment_id: int | None,
    tracker: JobTracker | None = None,
    batch_size: int | None = None,
) -> int:
    """Stream the contacts to `path` (UTF-8, header first); the number of rows written.

    The next batch is read while this one is formatted and written: the database works
    on its own core meanwhile. At most two batches are in memory."""
    size = batch_size or settings.export_batch_size
    conn = connections.get("default")
    ids = [i for i, c in enumerate(columns) if c.kind == "id"]
    # Only values users typed can start a formula; ours (datetimes, booleans) cannot.
    unsafe = [i for i, c in enumerate(columns) if c.kind in ("text", "tags", "attribute")]
    triggers, neutralize = ex.FORMULA_TRIGGERS, ex.neutralize

    async def fetch(after: int) -> Any:
        sql, params = batch_query(columns, workspace_id, segment_id, after, size)
        return (await conn.execute_query(sql, params))[1]

    written = 0
    next_batch: asyncio.Task[Any] | None = asyncio.ensure_future(fetch(0))
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([c.name for c in columns])
            while next_batch is not None:
                records = await next_batch
                next_batch = asyncio.ensure_future(fetch(records[-1][0])) if len(records) == size else None
                await asyncio.sleep(0)  # let the next query go out before the work below
                rows = []
                for record in records:
                    row = list(record)
                    del row[0]
                    for i in ids:
                        row[i] = _contact_gid(row[i])
                    for i in unsafe:
                        cell = row[i]
                        # The cheap test first: most cells start with a letter or a digit.
                        if cell.__class__ is str and cell[:1] in triggers:
                            row[i] = neutralize(cell)
                    rows.append(row)
                writer.writerows(rows)
                written += len(rows)
                del records, rows
                if tracker is not None:
                    await tracker.progress(written)
    finally:
        if next_batch is not None:
            next_batch.cancel()
            with contextlib.suppress(BaseException):
                await next_batch
    return written


async def _email(job: Job, recipients: list[str], rows: int) -> dict[str, Any]:
    url = signed_url(job.workspace_id, job.id)
    what = "attribute report" if job.kind is JobKind.ATTRIBUTE_REPORT else "contact export"
    hours = max(1, settings.export_link_ttl_seconds // 3600)
    text = (
        f"Your {what} is ready: {rows} contacts.\n\nDownload it within {hours} hours:\n{url}\n\n"
        "Anyone with this link can download the file until it expires: do not forward it.\n"
    )
    try:
        await send_mail(Mail(to=recipients, subject=f"Your {what} is ready", text=text))
    except MailNotConfigured:
        log.warning("export %s: cannot e-mail the link, SMTP_HOST is not set", job.id)
        return {"emailed": False, "emailError": "Outbound mail is not configured on this server."}
    except (MailError, ValueError) as exc:
        # The details (server, its answer) go to the log, not to the API.
        log.warning("export %s: could not e-mail the link: %s", job.id, exc)
        return {"emailed": False, "emailError": "The mail server could not be reached or refused the message."}
    return {"emailed": True}


# -- arq task -----------------------------------------------------------------------------------


async def export_contacts(ctx: dict[str, Any], job_id: int) -> dict[str, Any] | None:
    job = await Job.get_or_none(id=job_id)
    if job is None:
        return None
    segment_id = job.params.get("segment_id")
    names = list(job.params.get("columns") or [])
    # Validated when queued; an attribute deleted since then exports as an empty column.
    keys = [n[len(ex.ATTRIBUTE_PREFIX) :] for n in names if n.startswith(ex.ATTRIBUTE_PREFIX)]
    columns, errors = ex.parse_columns(names, keys)
    total = await count_rows(job.workspace_id, segment_id)
    tracker = await JobTracker.begin(job_id, ctx.get("hub"), total=total)
    if tracker is None:
        return None  # cancelled, or already done by an earlier attempt
    if errors:
        await tracker.fail("; ".join(e.message for e in errors))
        return None
    path = export_path(job.workspace_id, job.id, job.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    started_at = (await Job.get(id=job_id)).started_at  # this run's, set by begin()
    try:
        rows = await write_csv(partial, columns, job.workspace_id, segment_id, tracker)
        if await erased_since(job.workspace_id, started_at):
            # A contact deleted meanwhile may be in the rows already written.
            await tracker.fail(ERASED_MESSAGE)
            return None
        os.replace(partial, path)
    except JobCancelled:
        log.info("export %s cancelled", job_id)
        return None
    except DatabaseBusy:
        raise  # arq runs it again: the job record stays RUNNING, the file starts afresh
    except Exception:
        log.exception("export %s failed", job_id)
        await tracker.fail("The export failed unexpectedly (the error is logged); try again.")
        return None
    finally:
        # Also on arq's timeout (CancelledError): a retry starts a file of its own.
        partial.unlink(missing_ok=True)
    result: dict[str, Any] = {"rows": rows, "bytes": path.stat().st_size, "columns": len(columns)}
    recipients = list(job.params.get("email_to") or [])
    if recipients:
        result.update(await _email(job, recipients, rows))
    try:
        await tracker.succeed(result)
    except JobCancelled:
        path.unlink(missing_ok=True)
        return None
    log.info("export %s: %s rows, %s bytes", job_id, rows, result["bytes"])
    return result


async def prune_exports(ctx: dict[str, Any]) -> int:
    """Hourly: delete export files EXPORT_RETENTION_DAYS after their job finished, and
    fail exports whose worker died for good (RUNNING far longer than any retry could).
    Also removes the files deleteContact left behind when its process died before it
    could (its link answers 410 meanwhile)."""
    now = datetime.now(UTC)
    await Job.filter(
        kind__in=list(EXPORT_KINDS),
        status=JobStatus.RUNNING,
        started_at__lt=now - timedelta(seconds=3 * EXPORT_TIMEOUT),
    ).update(
        status=JobStatus.FAILED,
        error="The worker running this export stopped; try again.",
        finished_at=now,
        seq=F("seq") + 1,
    )
    cutoff = now - timedelta(days=settings.export_retention_days)
    recent = now - timedelta(hours=2)  # this sweep runs hourly
    removed = 0
    latest = await (
        DeletedContact.filter(deleted_at__gte=recent)
        .annotate(last=Max("deleted_at"))
        .group_by("workspace_id")
        .values("workspace_id", "last")
    )
    for row in latest:
        removed += await remove_erased_exports(row["workspace_id"], row["last"])
    after = 0
    while True:
        rows = (
            await Job.filter(kind__in=list(EXPORT_KINDS), finished_at__lt=cutoff, id__gt=after)
            .order_by("id")
            .limit(500)
            .values_list("id", "workspace_id", "kind")
        )
        if not rows:
            return removed
        for job_id, workspace_id, kind in rows:
            path = export_path(workspace_id, job_id, JobKind(kind))
            if path.exists():
                path.unlink(missing_ok=True)
                removed += 1
        after = rows[-1][0]


# -- a contact's data archive (exportContactData) ------------------------------------------------

ARCHIVE_FORMAT = "parley.contact-data/1"
ARCHIVE_BATCH = 500


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _gid(type_name: str, pk: int | None) -> str | None:
    return encode_global_id(type_name, pk) if pk is not None else None


def _note(n: ContactNote) -> dict[str, Any]:
    return {
        "id": _gid("ContactNote", n.id),
        "body": n.body,
        "authorId": _gid("Agent", n.author_id),
        "createdAt": _iso(n.created_at),
    }


def _event(e: ContactEvent) -> dict[str, Any]:
    return {
        "id": _gid("ContactEvent", e.id),
        "kind": e.kind.value,
        "name": e.name,
        "url": e.url,
        "title": e.title,
        "properties": e.properties,
        "occurredAt": _iso(e.occurred_at),
    }


def _conversation(c: Conversation) -> dict[str, Any]:
    return {
        "id": _gid("Conversation", c.id),
        "channelId": _gid("Channel", c.channel_id),
        "subject": c.subject,
        "status": c.status.value,
        "rating": c.rating,
        "websiteUrl": c.website_url,
        "createdAt": _iso(c.created_at),
        "resolvedAt": _iso(c.resolved_at),
    }


def _message(m: Message) -> dict[str, Any]:
    return {
        "id": _gid("Message", m.id),
        "senderKind": m.sender_kind.value,
        "direction": m.direction.value,
        "body": m.body,
        "createdAt": _iso(m.created_at),
    }


def _attachment(a: Attachment) -> dict[str, Any]:
    return {
        "id": _gid("Attachment", a.id),
        "messageId": _gid("Message", a.message_id) if a.message_id else None,
        "filename": a.filename,
        "contentType": a.content_type,
        "size": a.size,
        "url": download_url(a.workspace_id, a.id),
    }


async def _stream(out: Any, query: Any, convert: Any, tracker: JobTracker | None, counted: list[int]) -> int:
    """Write the rows of `query` as JSON array items, ARCHIVE_BATCH at a time by id (the
    caller writes the brackets): memory holds one batch whatever the contact's history."""
    written, after = 0, 0
    while True:
        rows = await query.filter(id__gt=after).order_by("id").limit(ARCHIVE_BATCH)
        if not rows:
            return written
        for row in rows:
            out.write(("," if written else "") + json.dumps(convert(row), separators=(",", ":"), default=str))
            written += 1
        after = rows[-1].id
        counted[0] += len(rows)
        if tracker is not None:
            await tracker.progress(counted[0])


async def write_contact_archive(path: Path, contact: Contact, tracker: JobTracker | None = None) -> dict[str, int]:
    """One JSON document: the contact's profile, attributes, consents, tags, segment
    memberships, notes, events, and conversations with their messages, streamed to `path`.
    How many of each were written."""
    ws = contact.workspace_id
    profile = webhooks.contact_data(contact)
    definitions = {
        d.key: d.label
        for d in await AttributeDefinition.filter(workspace_id=ws, key__in=list(contact.attributes or {}))
    }
    attributes = [
        {"key": key, "label": definitions.get(key, key), "value": value}
        for key, value in (contact.attributes or {}).items()
    ]
    consents = {k: profile.pop(k) for k in ("gdprConsent", "gdprConsentAt", "smsConsent", "smsConsentAt")}
    profile.pop("attributes")
    tags = sorted(await ContactTag.filter(contact_id=contact.id).values_list("name", flat=True))
    memberships = (
        await SegmentMembership.filter(contact_id=contact.id)
        .order_by("segment_id")
        .values("segment_id", "segment__name", "joined_at")
    )
    segments = [
        {"id": _gid("Segment", m["segment_id"]), "name": m["segment__name"], "joinedAt": _iso(m["joined_at"])}
        for m in memberships
    ]
    head = {
        "format": ARCHIVE_FORMAT,
        "exportedAt": datetime.now(UTC).isoformat(),
        "contact": profile,
        "attributes": attributes,
        "consents": consents,
        "tags": tags,
        "segmentMemberships": segments,
    }
    counts = {"notes": 0, "events": 0, "conversations": 0, "messages": 0}
    counted = [0]
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(head, separators=(",", ":"), default=str)[:-1])
        out.write(',"notes":[')
        counts["notes"] = await _stream(out, ContactNote.filter(contact_id=contact.id), _note, tracker, counted)
        out.write('],"events":[')
        counts["events"] = await _stream(out, ContactEvent.filter(contact_id=contact.id), _event, tracker, counted)
        out.write('],"conversations":[')
        after = 0
        while True:
            conversations = (
                await Conversation.filter(contact_id=contact.id, id__gt=after).order_by("id").limit(ARCHIVE_BATCH)
            )
            if not conversations:
                break
            for conversation in conversations:
                item = json.dumps(_conversation(conversation), separators=(",", ":"))[:-1]
                out.write(("," if counts["conversations"] else "") + item + ',"messages":[')
                messages = Message.filter(conversation_id=conversation.id)
                counts["messages"] += await _stream(out, messages, _message, tracker, counted)
                out.write("]}")
                counts["conversations"] += 1
            after = conversations[-1].id
        out.write("]")
        # The files of its messages: what they were and a signed link to each (valid for
        # ATTACHMENT_LINK_TTL_SECONDS from now, like any download link).
        out.write(',"attachments":[')
        files = Attachment.filter(workspace_id=ws, contact_id=contact.id, message_id__isnull=False)
        counts["attachments"] = await _stream(out, files, _attachment, tracker, counted)
        out.write("]}")
    return counts


async def export_contact_data(ctx: dict[str, Any], job_id: int) -> dict[str, Any] | None:
    """exportContactData's task: the archive of one contact, as a downloadable export."""
    job = await Job.get_or_none(id=job_id)
    if job is None:
        return None
    tracker = await JobTracker.begin(job_id, ctx.get("hub"))
    if tracker is None:
        return None
    contact = await Contact.get_or_none(id=job.params.get("contact_id"), workspace_id=job.workspace_id)
    if contact is None:
        await tracker.fail("The contact was deleted.")
        return None
    path = export_path(job.workspace_id, job.id, job.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    started_at = (await Job.get(id=job_id)).started_at
    try:
        counts = await write_contact_archive(partial, contact, tracker)
        if await erased_since(job.workspace_id, started_at):
            await tracker.fail(ERASED_MESSAGE)
            return None
        os.replace(partial, path)
    except JobCancelled:
        return None
    except DatabaseBusy:
        raise
    except Exception:
        log.exception("contact data export %s failed", job_id)
        await tracker.fail("The export failed unexpectedly (the error is logged); try again.")
        return None
    finally:
        partial.unlink(missing_ok=True)
    result: dict[str, Any] = {**counts, "bytes": path.stat().st_size}
    try:
        await tracker.succeed(result)
    except JobCancelled:
        path.unlink(missing_ok=True)
        return None
    return result
