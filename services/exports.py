"""Export files, as the API and the export job both need them: where a file lives, its
signed download link, and the erasure rule (an export that began before a contact's
deletion may hold it: deleteContact removes its file, `prune_exports` finishes the rest).
The API side (`exportContacts`, the download endpoint) is resolvers/exports.py; the job
that writes the CSV is jobs/exports.py."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from core.config import settings
from domain import exports as ex
from models.contacts import DeletedContact
from models.job_records import Job, JobKind, JobStatus

# Jobs that write a file to download: CSV exports and a contact's data archive (JSON).
EXPORT_KINDS = (JobKind.EXPORT, JobKind.ATTRIBUTE_REPORT, JobKind.CONTACT_DATA_EXPORT)


def export_path(workspace_id: int, job_id: int, kind: JobKind = JobKind.EXPORT) -> Path:
    suffix = "json" if kind is JobKind.CONTACT_DATA_EXPORT else "csv"
    return Path(settings.export_dir) / str(workspace_id) / f"{job_id}.{suffix}"


def signed_url(workspace_id: int, job_id: int, *, now: float | None = None) -> str:
    """The download link of an export, valid for EXPORT_LINK_TTL_SECONDS from `now`."""
    expires = int(now if now is not None else time.time()) + settings.export_link_ttl_seconds
    signature = ex.download_signature(settings.secret_key, workspace_id=workspace_id, job_id=job_id, expires=expires)
    query = urlencode({"expires": expires, "signature": signature})
    return f"{settings.public_url.rstrip('/')}/exports/{workspace_id}/{job_id}?{query}"


# -- erasure ---------------------------------------------------------------------------------

ERASED_MESSAGE = "A contact in this export has since been deleted, so the file was removed: run the export again."
_ERASE_BATCH = 500
# Which exports a deletion may be in, by time: deleteContact stamps `deleted_at` in the last
# statement of its transaction, but the commit comes after it, and the worker that stamps
# an export's `started_at` runs on another clock. An export that started a little after
# the stamp may still have read the contact before the commit: so every export started up
# to ERASURE_MARGIN after a deletion counts as possibly holding it (its file is removed,
# its link answers 410). The margin covers the commit (it follows the stamp at once) and
# the skew of clocks kept by NTP (well under a second), with room to spare (ids would not
# do: PostgreSQL hands out sequence values in no commit order). What it costs: an export
# started within the margin after a deletion is run again; kept short, so that a workspace
# deleting contacts often still gets its exports.
ERASURE_MARGIN = timedelta(seconds=10)


async def erased_since(workspace_id: int, started_at: datetime | None) -> bool:
    """Whether a contact of the workspace was deleted after an export began, or shortly
    before (ERASURE_MARGIN), on the (workspace_id, deleted_at) index: the export may hold it."""
    if started_at is None:
        return False
    return await DeletedContact.filter(workspace_id=workspace_id, deleted_at__gte=started_at - ERASURE_MARGIN).exists()


async def remove_erased_exports(workspace_id: int, deleted_at: datetime) -> int:
    """Remove the files of the workspace's exports that began before `deleted_at` (a
    contact's deletion; or up to ERASURE_MARGIN after it) and are still kept; the number of
    files removed. Keyset batches:
    bounded memory whatever the number of exports."""
    cutoff = deleted_at - timedelta(days=settings.export_retention_days)
    removed, after = 0, 0
    while True:
        ids = await (
            Job.filter(
                workspace_id=workspace_id,
                kind__in=list(EXPORT_KINDS),
                status=JobStatus.SUCCEEDED,
                started_at__lt=deleted_at + ERASURE_MARGIN,
                finished_at__gte=cutoff,
                id__gt=after,
            )
            .order_by("id")
            .limit(_ERASE_BATCH)
            .values_list("id", "kind")
        )
        for job_id, kind in ids:
            path = export_path(workspace_id, job_id, JobKind(kind))
            if path.exists():
                path.unlink(missing_ok=True)
                removed += 1
        if len(ids) < _ERASE_BATCH:
            return removed
        after = ids[-1][0]
