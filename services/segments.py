"""Segment membership, as the API and the jobs both need it: the SQL of a rule tree,
the attribute types rules are parsed against, and the marks that queue a debounced
re-evaluation of a changed contact (the refresh itself is jobs/segments.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from core import keys
from core.db import dialect
from core.events import Outbox
from core.queue import enqueue
from domain import segments as rules_lang
from models.contacts import AttributeDefinition

DEBOUNCE = timedelta(seconds=1)
PENDING_EXPIRY = 300  # s: should a queued run be lost, the next mark after this queues another


async def attribute_types(workspace_id: int) -> dict[str, str]:
    rows = await AttributeDefinition.filter(workspace_id=workspace_id).values_list("key", "type")
    return {key: str(kind) for key, kind in rows}


def matching_sql(
    group: rules_lang.Group, workspace_id: int, *, now: datetime, param_start: int = 1
) -> tuple[str, list[Any]]:
    """`c.workspace_id = … AND (rules)`: the contacts a rule tree matches, as SQL."""
    d = dialect()
    placeholder = "?" if d == "sqlite" else f"${param_start}"
    where, params = rules_lang.compile_where(group, d, now=now, param_start=param_start + 1)
    return f"c.workspace_id = {placeholder} AND ({where})", [workspace_id, *params]


async def schedule_dirty_refresh(
    hub: Any, jobs: Any, workspace_id: int, contact_ids: list[int], *, conversations_only: bool = False
) -> None:
    """Queue a debounced re-evaluation for these contacts: of every segment, or, when only
    their conversations changed (`conversations_only`), of the segments that count
    conversations (a campaign's 100,000 new conversations re-evaluate no other segment)."""
    if hub is None or not contact_ids:
        return
    key = keys.dirty_conversations(workspace_id) if conversations_only else keys.dirty_contacts(workspace_id)
    await hub.redis.sadd(key, *contact_ids)
    # One queued run per workspace absorbs a burst of marks. Not by arq job id: arq refuses
    # a job id while that job is still running, so a mark made after the run had read the
    # sets and before it ended would wait for the next change. The pending flag is cleared
    # when the run starts, before it reads the sets; the expiry only covers a lost job.
    pending = keys.dirty_refresh_pending(workspace_id)
    claimed = await hub.redis.set(pending, 1, nx=True, ex=PENDING_EXPIRY)
    if claimed and not await enqueue(jobs, "refresh_dirty_contacts", workspace_id, defer=DEBOUNCE):
        await hub.redis.delete(pending)


def mark_for_segments(outbox: Outbox, workspace_id: int, contact_id: int, *, conversations_only: bool = False) -> None:
    """After commit: remember the contact as changed and queue a debounced re-evaluation
    of the workspace's segments for the changed contacts (only of those that count
    conversations, when only the contact's conversations changed)."""

    async def mark() -> None:
        await schedule_dirty_refresh(
            outbox.hub, outbox.jobs, workspace_id, [contact_id], conversations_only=conversations_only
        )

    outbox.after_commit(mark)
