"""Contact exports: `exportContacts` and `exportAttributeReport` queue a job (jobs/exports.py
writes the CSV); `GET /exports/{workspace_id}/{job_id}?expires=…&signature=…` serves it.

Download links are bearer URLs, so that the link in an e-mail opens in a browser:
- the signature (HMAC-SHA256 with SECRET_KEY over the workspace, the job and the expiry)
  is checked first, without touching the database: a wrong, altered or expired link is
  403 whatever it points at, so a guessed link learns nothing;
- a request that also sends `Authorization: Bearer …` (the SPA, an integrator) must
  authenticate, and a principal of another workspace gets 404: to it the export does not
  exist, as with `node(id:)`; one of the same workspace needs contacts:export (403);
- a valid link to an export that is gone (never finished, cancelled, its file removed)
  is 404;
- an export that began before a contact of its workspace was deleted may hold that
  contact: deleteContact removes its file (`remove_erased_exports`; the hourly
  `prune_exports` finishes what a dead process left) and its link answers 410 Gone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from core.config import settings
from core.context import Context
from core.errors import Code, UserError, UserFailure
from core.events import atomic
from core.permissions import Permission
from core.queue import enqueue
from core.scoping import Scope
from domain import contact_fields as cf
from domain import exports as ex
from models.contacts import AttributeDefinition, Contact
from models.job_records import Job, JobKind, JobStatus
from services.exports import ERASED_MESSAGE, EXPORT_KINDS, erased_since, export_path, signed_url
from services.job_records import arq_job_id, create_job

log = logging.getLogger("parley.exports")

MAX_RECIPIENTS = 10
# What a download is called and served as, by job kind.
DOWNLOADS = {
    JobKind.EXPORT: ("contacts", "csv", "text/csv; charset=utf-8"),
    JobKind.ATTRIBUTE_REPORT: ("attribute-report", "csv", "text/csv; charset=utf-8"),
    JobKind.CONTACT_DATA_EXPORT: ("contact-data", "json", "application/json"),
}


# -- starting an export ------------------------------------------------------------------------


async def attribute_keys(workspace_id: int) -> list[str]:
    """The workspace's attribute keys, in the order admins arranged them."""
    rows = (
        await AttributeDefinition.filter(workspace_id=workspace_id)
        .order_by("position", "id")
        .values_list("key", flat=True)
    )
    return [str(k) for k in rows]


async def start_export(
    ctx: Context, kind: JobKind, *, columns: list[str] | None, segment_gid: str | None, email_to: list[str] | None
) -> Job:
    """Validate, record the job and queue it. The attribute report's columns are the
    identity fields and every attribute definition; `columns` is for CSV exports."""
    ctx.require(Permission.CONTACTS_READ)
    principal = ctx.require(Permission.CONTACTS_EXPORT)
    workspace_id = ctx.scope.workspace_id
    errors: list[UserError] = []

    segment_id = None
    if segment_gid is not None:
        from resolvers.segments import find_segment

        segment = await find_segment(ctx, segment_gid)
        if segment is None:
            errors.append(UserError(["segmentId"], Code.NOT_FOUND, "No segment with this id."))
        else:
            segment_id = segment.id

    keys = await attribute_keys(workspace_id)
    names = list(columns or []) if kind is JobKind.EXPORT else ex.attribute_report_columns(keys)
    _, column_errors = ex.parse_columns(names, keys)
    for e in column_errors:
        errors.append(UserError(["columns", str(e.index)] if e.index >= 0 else ["columns"], Code(e.code), e.message))

    recipients = _recipients(email_to or [], errors)
    if errors:
        raise UserFailure(*errors)
    params: dict[str, Any] = {"format": "csv", "columns": names, "segment_id": segment_id, "email_to": recipients}
    async with atomic(ctx.outbox):
        job = await create_job(workspace_id, kind, principal=principal, params=params)
        pool = ctx.jobs
        ctx.outbox.after_commit(lambda: _queue(pool, job.id))
    return job


async def start_contact_data_export(ctx: Context, gid: str) -> Job:
    """exportContactData: a job that writes one contact's data archive (a GDPR access
    request), downloaded like an export."""
    ctx.require(Permission.CONTACTS_READ)
    principal = ctx.require(Permission.CONTACTS_EXPORT)
    contact = await ctx.scope.by_global_id(gid, "Contact", Contact)
    if contact is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No contact with this id.")
    async with atomic(ctx.outbox):
        job = await create_job(
            contact.workspace_id, JobKind.CONTACT_DATA_EXPORT, principal=principal, params={"contact_id": contact.id}
        )
        pool = ctx.jobs
        ctx.outbox.after_commit(lambda: _queue(pool, job.id, "export_contact_data"))
    return job


async def _queue(pool: Any, job_id: int, function: str = "export_contacts") -> None:
    await enqueue(pool, function, job_id, job_id=arq_job_id(job_id))


def _recipients(addresses: list[str], errors: list[UserError]) -> list[str]:
    if len(addresses) > MAX_RECIPIENTS:
        errors.append(UserError(["emailTo"], Code.INVALID, f"At most {MAX_RECIPIENTS} addresses."))
        return []
    clean: list[str] = []
    for i, address in enumerate(addresses):
        try:
            clean.append(cf.normalize_email(address))
        except ValueError as exc:
            errors.append(UserError(["emailTo", str(i)], Code.INVALID, str(exc).capitalize() + "."))
    return sorted(set(clean), key=clean.index)


# -- the file and its link ---------------------------------------------------------------------


def download_url(job: Job) -> str | None:
    """A signed link to a finished export's file; None for other jobs and removed files."""
    if job.kind not in EXPORT_KINDS or job.status is not JobStatus.SUCCEEDED:
        return None
    if not export_path(job.workspace_id, job.id, job.kind).is_file():
        return None  # removed after EXPORT_RETENTION_DAYS
    return signed_url(job.workspace_id, job.id)


# -- the download endpoint -----------------------------------------------------------------------


def _error(status: int, code: Code, message: str) -> Response:
    return JSONResponse(
        {"error": {"code": code.value, "message": message}}, status_code=status, headers={"cache-control": "no-store"}
    )


async def download_endpoint(request: Request) -> Response:
    """GET /exports/{workspace_id}/{job_id}?expires=…&signature=… (see the module docstring)."""
    from resolvers.auth import authenticate

    try:
        workspace_id = int(request.path_params["workspace_id"])
        job_id = int(request.path_params["job_id"])
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        return _error(403, Code.FORBIDDEN, "This download link is not valid.")
    signature = request.query_params.get("signature", "")
    if not ex.signature_valid(
        settings.secret_key,
        workspace_id=workspace_id,
        job_id=job_id,
        expires=expires,
        signature=signature,
        now=time.time(),
    ):
        return _error(403, Code.FORBIDDEN, "This download link is not valid or has expired.")
    authorization = request.headers.get("authorization")
    if authorization is not None:
        principal = await authenticate(authorization)
        if principal is None:
            return _error(401, Code.UNAUTHENTICATED, "Invalid credentials.")
        if principal.workspace_id != workspace_id:
            return _error(404, Code.NOT_FOUND, "No such export.")
        if not principal.can(Permission.CONTACTS_EXPORT):
            return _error(403, Code.FORBIDDEN, "This needs the contacts:export permission.")
    job = await Scope(workspace_id).get(Job, job_id)
    if job is None or job.kind not in EXPORT_KINDS or job.status is not JobStatus.SUCCEEDED:
        return _error(404, Code.NOT_FOUND, "No such export.")
    path = export_path(workspace_id, job_id, job.kind)
    if await erased_since(workspace_id, job.started_at):
        return _error(410, Code.GONE, ERASED_MESSAGE)
    if not path.is_file():
        return _error(404, Code.NOT_FOUND, "No such export.")
    log.info("export %s of workspace %s downloaded", job_id, workspace_id)
    name, suffix, media_type = DOWNLOADS[job.kind]
    return FileResponse(
        path,
        media_type=media_type,
        filename=f"{name}-{job_id}.{suffix}",
        headers={
            "cache-control": "private, no-store",
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        },
    )
