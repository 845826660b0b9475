"""Segment membership: materialised by SQL in the database, joins and leaves published.

- `refresh_segment(segment_id)`: a full re-evaluation (after a rule change, and on a
  schedule for time-relative rules such as "seen in the last 7 days").
- `refresh_dirty_contacts(workspace_id)`: re-evaluates every segment of a workspace for the
  contacts changed since the last run; changes add contact ids to a Redis set and queue
  this job under one id, so a burst of changes is handled in one debounced run.

Joins and leaves are computed as set differences in SQL (INSERT … SELECT … WHERE NOT
EXISTS, UPDATE … WHERE NOT EXISTS), stamped with the refresh's sequence number, and
streamed to subscribers in chunks: memory stays bounded whatever the segment's size.
Runs are idempotent; a retried run finds nothing left to do.

A segment with few members joins its new members with INSERT … ON CONFLICT DO NOTHING
instead of the anti-join: when segment_memberships is (nearly) empty at planning time —
the first refresh in a new database — PostgreSQL plans NOT EXISTS as a nested loop over a
sequential scan of segment_memberships, and every rescan reads the pages the same INSERT
has added so far: quadratic, 42–59 s for 100,000 joins instead of 2.5 s. Statistics do not
help (the table really is empty). See BENCHMARKS.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from core import keys
from core.db import SqlBuilder, bind_datetime, dialect
from core.errors import DatabaseBusy
from domain import segments as rules_lang
from models.job_records import JobKind
from models.segments import Segment, SegmentMembership
from services.job_records import JobTracker, create_job, record_finished
from services.segments import attribute_types, matching_sql
from services.webhooks import segment_membership_changed

log = logging.getLogger("parley.jobs.segments")

ANALYZE_AFTER = 10_000
CHUNK = 1000
# A full refresh on SQLite: contacts re-evaluated per transaction (see refresh_whole).
WINDOW = 5000
# Below this many members, joins are inserted with ON CONFLICT DO NOTHING (at most this
# many conflicts, a few milliseconds); from it on, segment_memberships is large enough
# that the planner probes it by index or hash, and NOT EXISTS is the cheaper statement.
FEW_MEMBERS = 10_000


async def refresh(
    segment: Segment,
    *,
    contact_ids: list[int] | None = None,
    window: tuple[int, int | None] | None = None,
    publish: Any = None,
) -> dict[str, int]:
    """Bring the segment's membership up to date, for every contact, only `contact_ids`, or
    only the contacts whose id is in `window` (low, exclusive; high, inclusive or None)."""
    now = datetime.now(UTC)
    group = rules_lang.parse(segment.rules, await attribute_types(segment.workspace_id))
    async with in_transaction() as tx:
        locked = await Segment.select_for_update().get(id=segment.id)
        seq = locked.refresh_seq + 1

        q = SqlBuilder()
        head = (
            "INSERT INTO segment_memberships (workspace_id, segment_id, contact_id, joined_at, "  # noqa: S608
            "joined_seq, last_seen_at) "
            f"SELECT {q.param(segment.workspace_id)}, {q.param(segment.id)}, c.id, "
            f"{q.param(bind_datetime(now))}, {q.param(seq)}, c.last_seen_at "
            "FROM contacts c WHERE "
        )
        where, params = matching_sql(group, segment.workspace_id, now=now, param_start=q.next_index)
        q.extend(params)
        restrict = f" AND c.id IN {q.in_list(contact_ids)}" if contact_ids else _in_window(q, "c.id", window)
        if locked.member_count < FEW_MEMBERS:
            tail = " ON CONFLICT (segment_id, contact_id) DO NOTHING"
        else:
            tail = (
                " AND NOT EXISTS (SELECT 1 FROM segment_memberships m "  # noqa: S608
                f"WHERE m.segment_id = {q.param(segment.id)} AND m.contact_id = c.id)"
            )
        await tx.execute_query(head + where + restrict + tail, q.params)

        q = SqlBuilder()
        head = f"UPDATE segment_memberships SET left_seq = {q.param(seq)} WHERE segment_id = {q.param(segment.id)}"  # noqa: S608
        restrict = (
            f" AND contact_id IN {q.in_list(contact_ids)}" if contact_ids else _in_window(q, "contact_id", window)
        )
        where, params = matching_sql(group, segment.workspace_id, now=now, param_start=q.next_index)
        sub = f" AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = segment_memberships.contact_id AND {where})"  # noqa: S608
        q.extend(params)
        await tx.execute_query(head + restrict + sub, q.params)

        # The members who stay keep their contact's last_seen_at, the key Segment.contacts
        # pages by: a contact seen since moves up the member order with this refresh.
        q = SqlBuilder()
        head = (
            "UPDATE segment_memberships AS m SET last_seen_at = c.last_seen_at FROM contacts AS c "  # noqa: S608
            f"WHERE m.segment_id = {q.param(segment.id)} AND m.left_seq IS NULL"
        )
        restrict = (
            f" AND m.contact_id IN {q.in_list(contact_ids)}" if contact_ids else _in_window(q, "m.contact_id", window)
        )
        await tx.execute_query(
            head + restrict + " AND c.id = m.contact_id AND c.last_seen_at <> m.last_seen_at", q.params
        )

        joined = await _stream(segment, seq, "joined_seq", publish)
        left = await _stream(segment, seq, "left_seq", publish)
        await SegmentMembership.filter(segment_id=segment.id, left_seq=seq).delete()
        count = await SegmentMembership.filter(segment_id=segment.id).count()
        await Segment.filter(id=segment.id).update(refresh_seq=seq, refreshed_at=now, member_count=count)
    if joined + left >= ANALYZE_AFTER and dialect() == "postgres":
        # After a bulk change autovacuum has not caught up yet, and with stale statistics
        # the first page of Segment.contacts hash-joins the whole membership (150-450 ms
        # at 1M contacts) instead of walking the index (under 1 ms): see BENCHMARKS.md.
        await connections.get("default").execute_script("ANALYZE segment_memberships")
    return {"joined": joined, "left": left, "members": count, "seq": seq}


def _in_window(q: SqlBuilder, column: str, window: tuple[int, int | None] | None) -> str:
    if window is None:
        return ""
    low, high = window
    return f" AND {column} > {q.param(low)}" + ("" if high is None else f" AND {column} <= {q.param(high)}")


async def refresh_whole(segment: Segment, publish: _Publisher) -> dict[str, int]:
    """A full refresh. On SQLite, whose one writer every process waits for, a window of
    WINDOW contacts at a time, each in a transaction of its own and published after it
    (a request waits behind one window, tens of milliseconds, not the whole workspace);
    PostgreSQL writes concurrently and refreshes in one transaction."""
    if dialect() != "sqlite":
        result = await refresh(segment, publish=publish)
        await publish.flush()
        return result
    totals = {"joined": 0, "left": 0, "members": 0, "seq": 0}
    low = 0
    while True:
        # The window's last contact id, WINDOW of the workspace's contacts on.
        edge = await connections.get("default").execute_query_dict(
            "SELECT id FROM contacts WHERE workspace_id = ? AND id > ? ORDER BY id LIMIT 1 OFFSET ?",
            [segment.workspace_id, low, WINDOW - 1],
        )
        high = edge[0]["id"] if edge else None  # the last window is open: it takes every id after
        result = await refresh(segment, window=(low, high), publish=publish)
        await publish.flush()
        totals = {
            "joined": totals["joined"] + result["joined"],
            "left": totals["left"] + result["left"],
            "members": result["members"],
            "seq": result["seq"],
        }
        if high is None:
            return totals
        low = high


async def _stream(segment: Segment, seq: int, column: str, publish: Any) -> int:
    """Publish the contact ids stamped with this refresh, CHUNK at a time, by keyset."""
    total, after = 0, 0
    while True:
        ids = (
            await SegmentMembership.filter(segment_id=segment.id, **{column: seq}, contact_id__gt=after)
            .order_by("contact_id")
            .limit(CHUNK)
            .values_list("contact_id", flat=True)
        )
        if not ids:
            return total
        total += len(ids)
        after = ids[-1]
        if publish is not None:
            kind = "joined" if column == "joined_seq" else "left"
            publish(
                keys.segment_channel(segment.workspace_id, segment.id),
                {"type": "segment", "segmentId": segment.id, "cursor": str(seq), kind: list(ids)},
            )
        # segment.joined / segment.left webhooks, written in this refresh's transaction.
        await segment_membership_changed(segment, "joined" if column == "joined_seq" else "left", list(ids))


class _Publisher:
    """Collects events during a refresh's transaction and publishes them after it."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, channel: str, payload: dict[str, Any]) -> None:
        self.pending.append((channel, payload))

    async def flush(self) -> None:
        import json

        if self.redis is None or not self.pending:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, payload in self.pending:
                pipe.publish(channel, json.dumps(payload, separators=(",", ":")))
            await pipe.execute()
        self.pending.clear()


# -- arq tasks ------------------------------------------------------------------------------


async def refresh_segment(ctx: dict[str, Any], segment_id: int, job_id: int | None = None) -> dict[str, int] | None:
    """A full refresh; `job_id` is its job record when a rule change queued it, and the
    periodic refresh (no record yet) records one here."""
    segment = await Segment.get_or_none(id=segment_id)
    if job_id is None and segment is not None:
        job_id = (
            await create_job(
                segment.workspace_id, JobKind.SEGMENT_REFRESH, params={"segment_id": segment_id, "trigger": "schedule"}
            )
        ).id
    tracker = await JobTracker.begin(job_id, ctx.get("hub")) if job_id is not None else None
    if segment is None:
        if tracker is not None:
            await tracker.fail("The segment was deleted.")
        return None
    try:
        result = await refresh_whole(segment, _Publisher(ctx.get("redis")))
    except DatabaseBusy:
        raise  # retried whole: what committed is consistent, the rest is done again
    except Exception:
        if tracker is not None:
            await tracker.fail("The refresh failed unexpectedly (the error is logged).")
        raise
    if tracker is not None:
        await tracker.succeed(dict(result))
    log.info("segment %s refreshed: %s", segment_id, result)
    return result


async def refresh_dirty_contacts(ctx: dict[str, Any], workspace_id: int) -> int:
    """Re-evaluate the contacts marked since the last run: changed contacts against every
    segment of the workspace, contacts whose conversations changed against the segments
    that count conversations. The number of contact ids handled."""
    redis = ctx["redis"]
    await redis.delete(keys.dirty_refresh_pending(workspace_id))
    started_at = datetime.now(UTC)
    segments = await Segment.filter(workspace_id=workspace_id)
    counting = await _counting_conversations(segments)
    conversations = keys.dirty_conversations(workspace_id)
    handled = await _refresh_marked(redis, keys.dirty_contacts(workspace_id), segments, covers=conversations)
    handled += await _refresh_marked(redis, conversations, counting)
    if handled:
        # A record of the run (kind SEGMENT_REFRESH), written once it is done.
        await record_finished(
            workspace_id,
            JobKind.SEGMENT_REFRESH,
            started_at=started_at,
            processed=handled,
            result={"contacts": handled, "segments": len(segments)},
            params={"trigger": "changed_contacts"},
        )
    return handled


async def _counting_conversations(segments: list[Segment]) -> list[Segment]:
    if not segments:
        return []
    types = await attribute_types(segments[0].workspace_id)

    def counts(segment: Segment) -> bool:
        try:
            return rules_lang.parse(segment.rules, types).counts_conversations
        except rules_lang.RuleError:
            return True  # refreshed as any other, which reports the rule's problem

    return [segment for segment in segments if counts(segment)]


async def _refresh_marked(redis: Any, key: str, segments: list[Segment], *, covers: str | None = None) -> int:
    """Pop the set's ids a chunk at a time and refresh `segments` for them (with none to
    refresh, the ids are only popped). The ids are also taken out of `covers`, a set whose
    re-evaluation this one includes (a change marked after that is still in it)."""
    handled = 0
    while True:
        raw = await redis.spop(key, CHUNK)
        if not raw:
            return handled
        if covers is not None:
            await redis.srem(covers, *raw)
        ids = sorted({int(x) for x in raw})
        handled += len(ids)
        for segment in segments:
            publisher = _Publisher(redis)
            await refresh(segment, contact_ids=ids, publish=publisher)
            await publisher.flush()


async def refresh_all_segments(ctx: dict[str, Any]) -> int:
    """The periodic full refresh: time-relative rules change membership with no write."""
    done, after = 0, 0
    while True:
        ids = await Segment.filter(id__gt=after).order_by("id").limit(100).values_list("id", flat=True)
        if not ids:
            return done
        for segment_id in ids:
            await refresh_segment(ctx, segment_id)
            done += 1
        after = ids[-1]
