"""`send_campaign(campaign_id)`: sends a campaign to its recipients, in batches.

- The audience is frozen first: a segment's members become recipient rows in one
  INSERT … SELECT (unique per campaign and contact), in the transaction that stamps
  `audience_frozen_at`, so a retried run neither re-reads the segment nor adds anyone
  twice. A list campaign's rows were written when it was created.
- On PostgreSQL the recipients table is ANALYZEd once a large audience is frozen: with
  the statistics of the table before, every batch's claim was planned as a scan of the
  whole audience.
- Recipients are then read in keyset batches of CAMPAIGN_BATCH_SIZE (by recipient id,
  joined to their contact), decided in Python (domain/campaigns.py: skip with a reason,
  wait out quiet hours, or send) and written in ONE transaction per batch: the
  recipients claimed by a conditional UPDATE (… WHERE status IN ('pending', 'waiting')
  RETURNING), a conversation and a message for each claimed one, the outreach receipts
  (services/attribution.py) and the campaign's counters. A recipient is `sent` exactly
  when its message exists: a run killed mid-batch rolls the whole batch back, and a
  second run (arq's retry, the sweep, or a concurrent duplicate) finds it sent and
  claims nothing — one message per contact and campaign. CAMPAIGN_CONCURRENCY batches (2)
  are in flight at once while the next is read: on PostgreSQL each writes on its own
  connection, in one statement, with PostgreSQL's own plan cache (core.db.
  allow_generic_plans: each row's foreign-key checks three times cheaper); SQLite has one
  writer, so there one batch's publishing overlaps the next one's transaction.
- Each conversation is created RESOLVED with the campaign's message in it (from the agent
  who created the campaign, else the bot): the inbox is not flooded, and the contact's
  reply reopens it like any inbound message. It has no resolved_at: nobody resolved it, and
  reports do not count it as resolved. Widget and SDK contacts hear it at once over
  `myMessages` (published after the commit, one pipelined round trip per batch);
  e-mail, SMS and messenger messages are handed to `deliver_message` (keyed by message
  id), and a run re-queues any that a dead worker left unqueued.
- E-mail, SMS and messenger recipients in their quiet hours wait (status waiting, next_attempt_at); the run
  queues itself again for the earliest of those times, and `resume_campaigns` (a cron
  sweep, also at worker start-up) catches what is due or lost: campaigns whose time has
  come, waiting recipients due, and running campaigns whose worker stopped writing
  batches (no heartbeat for CAMPAIGN_STALE_SECONDS).
- Progress goes to the campaign's job record (services/job_records.py): processed is sent +
  skipped, total the recipients. cancelCampaign stops the run between batches.

Time is a parameter (`clock`), so tests run the real job at a chosen time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core import keys
from core.config import settings
from core.db import SqlBuilder, allow_generic_plans, bind_datetime, dialect
from core.errors import DatabaseBusy
from core.queue import enqueue
from domain.attribution import source_key
from domain.campaigns import Reach, decide
from models.attribution import Receipt
from models.campaigns import Campaign, CampaignRecipient, CampaignStatus, RecipientStatus
from models.channels import SESSION_KINDS, Channel, ChannelKind
from models.conversations import DeliveryState, SenderKind
from models.job_records import Job, JobStatus
from models.workspaces import Agent
from services.attribution import record_receipts
from services.job_records import JobCancelled, JobTracker, arq_job_id
from services.segments import schedule_dirty_refresh

log = logging.getLogger("parley.jobs.campaigns")

Clock = Callable[[], datetime]
# Seconds one run may take (100,000 in-app recipients take seconds).
CAMPAIGN_TIMEOUT = 3600
# Runs of one campaign that may fail unexpectedly before it is FAILED.
MAX_ATTEMPTS = 5
OPEN = (RecipientStatus.PENDING.value, RecipientStatus.WAITING.value)
RECEIPTS = Receipt._meta.db_table
# Recipients frozen at once from which PostgreSQL's statistics of the table are renewed.
ANALYZE_AFTER = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _typed(q: SqlBuilder, value: Any, pg_type: str) -> str:
    """A parameter in a SELECT list: PostgreSQL cannot infer its type there."""
    return f"{q.param(value)}::{pg_type}" if q.postgres else q.param(value)


def _ids(q: SqlBuilder, ids: list[int]) -> str:
    """`IN (…)` on SQLite; on PostgreSQL one array parameter, unnested: `= ANY(array)`
    is planned as a filter, and on a table without fresh statistics (conversations
    growing by a whole campaign) that means a scan testing every row against every id."""
    if q.postgres:
        return f"IN (SELECT unnest({q.param(ids)}::bigint[]))"
    return "IN " + q.in_list(ids)


# -- the audience ------------------------------------------------------------------------------


async def freeze_audience(campaign: Campaign, now: datetime) -> int:
    """Write a segment campaign's recipient rows once; the number of recipients."""
    if campaign.audience_frozen_at is not None:
        return campaign.recipients
    async with in_transaction() as conn:
        await allow_generic_plans(conn)
        locked = await Campaign.select_for_update().get(id=campaign.id)
        if locked.audience_frozen_at is None:
            if locked.segment_id is not None:
                q = SqlBuilder()
                sql = (
                    "INSERT INTO campaign_recipients (workspace_id, campaign_id, contact_id, status) "  # noqa: S608
                    f"SELECT {_typed(q, campaign.workspace_id, 'int')}, {_typed(q, campaign.id, 'int')}, "
                    "m.contact_id, 'pending' "
                    f"FROM segment_memberships m WHERE m.segment_id = {q.param(locked.segment_id)} "
                    "ON CONFLICT (campaign_id, contact_id) DO NOTHING"
                )
                await conn.execute_query(sql, q.params)
            # Counted in the database: a segment's ids never come into Python.
            total = await CampaignRecipient.filter(campaign_id=campaign.id).count()
            await Campaign.filter(id=campaign.id).update(audience_frozen_at=now, recipients=total, heartbeat_at=now)
        await locked.refresh_from_db()
    campaign.audience_frozen_at, campaign.recipients = locked.audience_frozen_at, locked.recipients
    if locked.recipients >= ANALYZE_AFTER and dialect() == "postgres":
        # The batches claim their rows by primary key; with the table's statistics from
        # before these rows existed, PostgreSQL plans each claim as a scan of the whole
        # table (the audience once per batch). ANALYZE samples a bounded number of rows.
        await connections.get("default").execute_script("ANALYZE campaign_recipients")
    return campaign.recipients


# -- one batch ---------------------------------------------------------------------------------


class Sender:
    """What every batch of one campaign needs, loaded once."""

    def __init__(self, campaign: Campaign, channel: Channel, agent: Agent | None) -> None:
        self.campaign = campaign
        self.channel = channel
        self.kind = channel.kind
        self.in_app = channel.kind in SESSION_KINDS
        self.agent_id = agent.id if agent else None
        self.sender_kind = SenderKind.AGENT if agent else SenderKind.BOT
        self.sender_name = agent.name if agent else None
        self.source = source_key("campaign", campaign.id)

    async def next_batch(self, status: RecipientStatus, after: int, limit: int, now: datetime) -> list[dict[str, Any]]:
        """The next recipients in `status` (waiting ones only when due) with id > after,
        in id order: one range of the (campaign_id, status, id) index."""
        q = SqlBuilder()  # parameters in the order they appear: SQLite's are positional
        sql = (
            "SELECT r.id, r.contact_id, c.blocked, c.email, c.phone, c.sms_consent, c.time_zone, c.external_id "  # noqa: S608
            "FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id "
            f"WHERE r.campaign_id = {q.param(self.campaign.id)} AND r.status = {q.param(status.value)} "
        )
        if status is RecipientStatus.WAITING:
            sql += f"AND r.next_attempt_at <= {q.param(bind_datetime(now))} "
        sql += f"AND r.id > {q.param(after)} ORDER BY r.id LIMIT {q.param(limit)}"
        return await connections.get("default").execute_query_dict(sql, q.params)

    async def process(self, rows: list[dict[str, Any]], now: datetime) -> Batch:
        sends: list[int] = []
        skips: dict[str, list[int]] = {}
        waits: dict[datetime, list[int]] = {}
        for row in rows:
            reach = Reach(
                blocked=bool(row["blocked"]),
                email=row["email"],
                phone=row["phone"],
                sms_consent=row["sms_consent"],
                time_zone=row["time_zone"],
                external_id=row["external_id"],
            )
            decision = decide(self.kind.value, reach, now)
            if decision.action == "send":
                sends.append(row["id"])
            elif decision.action == "skip":
                skips.setdefault(decision.reason or "", []).append(row["id"])
            else:
                assert decision.at is not None
                waits.setdefault(decision.at, []).append(row["id"])
        batch = Batch()
        async with in_transaction() as conn:
            await allow_generic_plans(conn)
            stamp = bind_datetime(now)
            for reason, ids in skips.items():
                q = SqlBuilder()
                sql = (
                    f"UPDATE campaign_recipients SET status = 'skipped', skip_reason = {q.param(reason)} "  # noqa: S608
                    f"WHERE id {_ids(q, ids)} AND status IN ('pending', 'waiting') RETURNING id"
                )
                batch.skipped += len(await conn.execute_query_dict(sql, q.params))
            for at, ids in waits.items():
                q = SqlBuilder()
                sql = (
                    "UPDATE campaign_recipients SET status = 'waiting', "  # noqa: S608
                    f"next_attempt_at = {q.param(bind_datetime(at))} "
                    f"WHERE id {_ids(q, ids)} AND status IN ('pending', 'waiting') RETURNING id"
                )
                batch.waiting += len(await conn.execute_query_dict(sql, q.params))
            if sends:
                await self._send(conn, sends, now, stamp, batch)
            if batch.sent or batch.skipped:
                await Campaign.filter(id=self.campaign.id).update(
                    sent=F("sent") + batch.sent, skipped=F("skipped") + batch.skipped, heartbeat_at=now
                )
            else:
                await Campaign.filter(id=self.campaign.id).update(heartbeat_at=now)
        return batch

    async def _send(self, conn: Any, ids: list[int], now: datetime, stamp: Any, batch: Batch) -> None:
        campaign = self.campaign
        q = SqlBuilder()
        if q.postgres:
            return await self._send_postgres(conn, ids, now, stamp, batch)
        sql = (
            f"UPDATE campaign_recipients SET status = 'sent', sent_at = {q.param(stamp)} "  # noqa: S608
            f"WHERE id {_ids(q, ids)} AND status IN ('pending', 'waiting') RETURNING id, contact_id"
        )
        claimed = await conn.execute_query_dict(sql, q.params)
        contact_ids = [r["contact_id"] for r in claimed]
        if not contact_ids:
            return  # another run took them
        q = SqlBuilder()
        subject = campaign.subject if self.kind is ChannelKind.EMAIL else None
        sql = (
            "INSERT INTO conversations (workspace_id, contact_id, channel_id, topic_id, subject, status, vip, "
            "unread_count, contact_unread_count, last_message_at, created_at, updated_at) "
            f"SELECT c.workspace_id, c.id, {_typed(q, self.channel.id, 'int')}, {_typed(q, campaign.topic_id, 'int')}, "
            f"{_typed(q, subject, 'text')}, 'resolved', c.vip, 0, 1, "
            + ", ".join(_typed(q, stamp, "timestamptz") for _ in range(3))
            + " "
            f"FROM contacts c WHERE c.id {_ids(q, contact_ids)} RETURNING id, contact_id"
        )
        conversations = await conn.execute_query_dict(sql, q.params)
        conversation_ids = [r["id"] for r in conversations]
        state = DeliveryState.RECEIVED if self.in_app else DeliveryState.PENDING
        q = SqlBuilder()
        sql = (
            "INSERT INTO messages (workspace_id, conversation_id, sender_kind, agent_id, "  # noqa: S608
            "direction, body, delivery_state, created_at) "
            f"SELECT workspace_id, id, {_typed(q, self.sender_kind.value, 'text')}, {_typed(q, self.agent_id, 'int')}, "
            f"'outbound', {_typed(q, campaign.body, 'text')}, "
            f"{_typed(q, state.value, 'text')}, {_typed(q, stamp, 'timestamptz')} "
            f"FROM conversations WHERE id {_ids(q, conversation_ids)} RETURNING id, conversation_id"
        )
        messages = await conn.execute_query_dict(sql, q.params)
        await _set_by_id(conn, "conversations", "last_message_id", [(m["conversation_id"], m["id"]) for m in messages])
        contact_of = {r["id"]: r["contact_id"] for r in conversations}
        message_of = {contact_of[m["conversation_id"]]: m["id"] for m in messages}
        await _set_by_id(
            conn, "campaign_recipients", "message_id", [(r["id"], message_of[r["contact_id"]]) for r in claimed]
        )
        await record_receipts(campaign.workspace_id, self.source, contact_ids, now)
        batch.sent += len(contact_ids)
        batch.contact_ids.extend(contact_ids)
        batch.messages.extend((m["id"], m["conversation_id"], contact_of[m["conversation_id"]]) for m in messages)

    async def _send_postgres(self, conn: Any, ids: list[int], now: datetime, stamp: Any, batch: Batch) -> None:
        """The same rows in ONE statement, with no UPDATE pass: the claim draws each
        recipient's message id from the messages' sequence, so each conversation is
        inserted with its last message already (an UPDATE of a fresh row on PostgreSQL
        writes it again, with all its index entries), then the messages and receipts. The
        foreign keys between the new rows are checked at the statement's end, when all are
        there. One round trip a batch, and only the batch's ids cross the wire."""
        campaign = self.campaign
        q = SqlBuilder()
        at = f"{q.param(stamp)}::timestamptz"
        workspace = f"{q.param(campaign.workspace_id)}::int"
        subject = campaign.subject if self.kind is ChannelKind.EMAIL else None
        state = DeliveryState.RECEIVED if self.in_app else DeliveryState.PENDING
        sql = (
            "WITH claimed AS ("  # noqa: S608
            f"  UPDATE campaign_recipients r SET status = 'sent', sent_at = {at}, "
            "     message_id = nextval(pg_get_serial_sequence('messages', 'id')) "
            f"  WHERE r.id BETWEEN {q.param(min(ids))}::bigint AND {q.param(max(ids))}::bigint "
            f"    AND r.id = ANY({q.param(ids)}::bigint[]) AND r.status IN ('pending', 'waiting') "
            "  RETURNING r.contact_id, r.message_id), "
            "conversation AS ("
            "  INSERT INTO conversations (workspace_id, contact_id, channel_id, topic_id, subject, status, vip, "
            "    unread_count, contact_unread_count, last_message_id, last_message_at, created_at, updated_at) "
            f"  SELECT c.workspace_id, c.id, {q.param(self.channel.id)}::int, {q.param(campaign.topic_id)}::int, "
            f"{q.param(subject)}::text, "
            "'resolved', c.vip, 0, 1, "
            f"    claimed.message_id, {at}, {at}, {at} "
            "  FROM claimed JOIN contacts c ON c.id = claimed.contact_id "
            "  RETURNING id, contact_id, last_message_id), "
            "message AS ("
            "  INSERT INTO messages (id, workspace_id, conversation_id, sender_kind, agent_id, direction, body, "
            "delivery_state, created_at) "
            f"  SELECT last_message_id, {workspace}, id, {q.param(self.sender_kind.value)}::text, "
            f"{q.param(self.agent_id)}::int, "
            f"    'outbound', {q.param(campaign.body)}::text, {q.param(state.value)}::text, {at} FROM conversation), "
            "receipt AS ("
            f"  INSERT INTO {RECEIPTS} (workspace_id, contact_id, source, sent_at) "
            f"  SELECT {workspace}, contact_id, {q.param(self.source)}::text, {at} FROM claimed) "
            "SELECT id, contact_id, last_message_id FROM conversation"
        )
        conversations = await conn.execute_query_dict(sql, q.params)
        batch.sent += len(conversations)
        batch.contact_ids.extend(c["contact_id"] for c in conversations)
        batch.messages.extend((c["last_message_id"], c["id"], c["contact_id"]) for c in conversations)

    def events(self, batch: Batch, now: datetime) -> list[tuple[str, str]]:
        """`myMessages` events of the batch's messages, as add_message publishes them
        (message_row), already as JSON: only the ids differ, so the rest is encoded once."""
        state = (DeliveryState.RECEIVED if self.in_app else DeliveryState.PENDING).value
        rest = json.dumps(
            {
                "senderKind": self.sender_kind.value,
                "agentId": self.agent_id,
                "senderName": self.sender_name,
                "direction": "outbound",
                "body": self.campaign.body,
                "deliveryState": state,
                "createdAt": now.isoformat(),
                "attachments": [],
            },
            separators=(",", ":"),
        )[1:]
        ws = self.campaign.workspace_id
        return [
            (
                keys.contact_messages_channel(ws, contact),
                f'{{"type":"message","cursor":"{message}","message":{{"id":{message},"conversationId":{conversation},{rest}}}',
            )
            for message, conversation, contact in batch.messages
        ]


async def _set_by_id(conn: Any, table: str, column: str, pairs: list[tuple[int, int]]) -> None:
    """`table.column = value` for each (id, value): one UPDATE … FROM the list of pairs, a
    primary-key lookup each. (Joining the batch's rows by another column instead gets
    planned as scans of tables a campaign is growing, whose statistics lag behind.)"""
    q = SqlBuilder()
    if q.postgres:
        pairs_sql = (
            f"(SELECT unnest({q.param([p[0] for p in pairs])}::bigint[]) AS id, "
            f"unnest({q.param([p[1] for p in pairs])}::bigint[]) AS value)"
        )
        sql = f"UPDATE {table} SET {column} = v.value FROM {pairs_sql} v WHERE {table}.id = v.id"  # noqa: S608
    else:
        values = ", ".join(f"({q.param(i)}, {q.param(v)})" for i, v in pairs)
        sql = (
            f"WITH v(id, value) AS (VALUES {values}) "  # noqa: S608
            f"UPDATE {table} SET {column} = v.value FROM v WHERE {table}.id = v.id"
        )
    await conn.execute_query(sql, q.params)


class Batch:
    def __init__(self) -> None:
        self.sent = 0
        self.skipped = 0
        self.waiting = 0
        self.contact_ids: list[int] = []
        self.messages: list[tuple[int, int, int]] = []  # (message, conversation, contact)


async def _after_commit(sender: Sender, batch: Batch, now: datetime, hub: Any, jobs: Any) -> None:
    """Publish, hand e-mail/SMS/messenger to delivery, and mark contacts for segments.
    A worker dying here loses only events (clients catch up by query); deliveries are
    queued again by the next run (requeue_deliveries)."""
    if not batch.messages:
        return
    if hub is not None:
        try:
            await publish_many(hub.redis, sender.events(batch, now))
        except Exception:
            log.exception("campaign %s: could not publish %d messages", sender.campaign.id, len(batch.messages))
    if not sender.in_app:
        try:
            for message_id, _, _ in batch.messages:
                await enqueue(jobs, "deliver_message", message_id, job_id=keys.deliver_job(message_id))
        except Exception:
            log.exception("campaign %s: could not queue deliveries; the next run queues them", sender.campaign.id)
    try:
        await schedule_dirty_refresh(
            hub, jobs, sender.campaign.workspace_id, batch.contact_ids, conversations_only=True
        )
    except Exception:
        log.exception("campaign %s: could not mark contacts for segment refresh", sender.campaign.id)


# PUBLISH of many (channel, message) pairs in one command: one request to encode and one
# reply to parse per batch, instead of one per message.
PUBLISH_MANY = """
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
"""
PUBLISH_CHUNK = 1000


async def publish_many(redis: Any, events: list[tuple[str, str]]) -> None:
    script = redis.register_script(PUBLISH_MANY)
    for start in range(0, len(events), PUBLISH_CHUNK):
        args = [part for event in events[start : start + PUBLISH_CHUNK] for part in event]
        await script(args=args)


async def requeue_deliveries(campaign: Campaign, jobs: Any, batch_size: int = 1000) -> int:
    """Queue delivery of the campaign's messages still PENDING (arq refuses a message's
    job while it is queued; deliver_message sends only a PENDING message)."""
    if jobs is None:
        return 0
    queued, after = 0, 0
    while True:
        q = SqlBuilder()
        sql = (
            "SELECT m.id FROM campaign_recipients r JOIN messages m ON m.id = r.message_id "  # noqa: S608
            f"WHERE r.campaign_id = {q.param(campaign.id)} AND r.status = 'sent' AND m.delivery_state = 'pending' "
            f"AND m.id > {q.param(after)} ORDER BY m.id LIMIT {q.param(batch_size)}"
        )
        rows = await connections.get("default").execute_query_dict(sql, q.params)
        for row in rows:
            queued += await enqueue(jobs, "deliver_message", row["id"], job_id=keys.deliver_job(row["id"]))
        if len(rows) < batch_size:
            return queued
        after = rows[-1]["id"]


class Writers:
    """Batches being written, at most `width` at a time: `submit` starts one and, when
    all slots are taken, waits for the first to finish; both return the batches that
    finished. A batch's task writes it (one transaction) and then publishes it."""

    def __init__(self, sender: Sender, hub: Any, jobs: Any, width: int) -> None:
        self.sender, self.hub, self.jobs, self.width = sender, hub, jobs, width
        self.tasks: set[asyncio.Task[Batch]] = set()

    async def _write(self, rows: list[dict[str, Any]], now: datetime) -> Batch:
        batch = await self.sender.process(rows, now)
        await _after_commit(self.sender, batch, now, self.hub, self.jobs)
        return batch

    async def submit(self, rows: list[dict[str, Any]], now: datetime) -> list[Batch]:
        self.tasks.add(asyncio.create_task(self._write(rows, now)))
        if len(self.tasks) < self.width:
            return []
        finished, self.tasks = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        return [task.result() for task in finished]  # re-raises a batch's failure

    async def drain(self) -> list[Batch]:
        """Wait for every batch in flight; re-raises the first failure."""
        results = list(await asyncio.gather(*self.tasks)) if self.tasks else []
        self.tasks = set()
        return results

    async def settle(self) -> None:
        """On the way out of a failed or cancelled run: let the batches in flight commit
        or roll back, whatever they end with."""
        tasks, self.tasks = self.tasks, set()
        if tasks:
            await asyncio.wait(tasks)


# -- the run -----------------------------------------------------------------------------------


async def _set_status(campaign_id: int, status: CampaignStatus, now: datetime) -> bool:
    changed = await Campaign.filter(
        id=campaign_id, status__in=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING]
    ).update(status=status, finished_at=now)
    return bool(changed)


async def run_campaign(
    campaign_id: int,
    hub: Any = None,
    jobs: Any = None,
    *,
    clock: Clock = utcnow,
    batch_size: int | None = None,
    pause: float | None = None,
) -> dict[str, Any] | None:
    """One run: freeze the audience, send what is due, then complete, or queue the next
    run for the earliest waiting recipient. Idempotent; safe beside another run."""
    campaign = await Campaign.get_or_none(id=campaign_id)
    if campaign is None or campaign.status.finished or campaign.job_id is None:
        return None
    now = clock()
    if campaign.status is CampaignStatus.SCHEDULED and campaign.scheduled_at > now:
        # Too early (a clock ahead of ours, or a sweep): the deferred run comes later.
        at = campaign.scheduled_at
        await enqueue(
            jobs,
            "send_campaign",
            campaign_id,
            job_id=keys.campaign_job(campaign_id, int(at.timestamp())),
            defer=at - now,
        )
        return None
    tracker = await JobTracker.begin(campaign.job_id, hub)
    if tracker is None:
        job = await Job.get_or_none(id=campaign.job_id)
        if job is None or job.status is JobStatus.CANCELLED:
            await _set_status(campaign_id, CampaignStatus.CANCELLED, now)
        return None
    try:
        started = await Campaign.filter(
            id=campaign_id, status__in=[CampaignStatus.SCHEDULED, CampaignStatus.RUNNING]
        ).update(status=CampaignStatus.RUNNING, heartbeat_at=now)
        if not started:
            raise JobCancelled(campaign.job_id)
        await Campaign.filter(id=campaign_id, started_at__isnull=True).update(started_at=now)
        total = await freeze_audience(campaign, now)
        channel = await Channel.get(id=campaign.channel_id)
        agent = await Agent.get_or_none(id=campaign.created_by_id) if campaign.created_by_id else None
        sender = Sender(campaign, channel, agent)
        await campaign.refresh_from_db()
        done = campaign.sent + campaign.skipped
        await tracker.progress(done, total=total, force=True)
        if not sender.in_app:
            await requeue_deliveries(campaign, jobs)
        size = batch_size or settings.campaign_batch_size or (500 if dialect() == "sqlite" else 2000)
        wait = settings.campaign_batch_pause if pause is None else pause
        # Pending recipients first, then waiting ones that are due. Batches are read in
        # order and written by up to `width` tasks at once, each in its own transaction;
        # each publishes its messages once committed.
        writing = Writers(sender, hub, jobs, max(1, settings.campaign_concurrency))
        passes = [RecipientStatus.PENDING, RecipientStatus.WAITING]
        after = 0
        try:
            while passes:
                now = clock()
                rows = await sender.next_batch(passes[0], after, size, now)
                if not rows:
                    passes.pop(0)
                    after = 0
                    continue
                for batch in await writing.submit(rows, now):
                    done += batch.sent + batch.skipped
                    await tracker.progress(done)
                after = rows[-1]["id"]
                # Cancelled between batches: stop here (the next batch is not read).
                status = await Campaign.filter(id=campaign_id).first().values_list("status", flat=True)
                if status != CampaignStatus.RUNNING:
                    raise JobCancelled(campaign.job_id)
                if len(rows) < size:
                    passes.pop(0)
                    after = 0
                if wait:
                    await asyncio.sleep(wait)
            for batch in await writing.drain():
                done += batch.sent + batch.skipped
        except BaseException:
            await writing.settle()  # no batch is left half-way behind a cancel or a failure
            raise
        await tracker.progress(done, force=True)
        waiting = CampaignRecipient.filter(campaign_id=campaign_id, status=RecipientStatus.WAITING)
        earliest = await waiting.order_by("next_attempt_at").first().values_list("next_attempt_at", flat=True)
        if earliest is not None:
            count = await waiting.count()
            await enqueue(
                jobs,
                "send_campaign",
                campaign_id,
                job_id=keys.campaign_job(campaign_id, int(earliest.timestamp())),
                defer=max(earliest - utcnow(), timedelta(0)),
            )
            log.info(
                "campaign %s: %d recipients wait for quiet hours to end (first at %s)", campaign_id, count, earliest
            )
            return {"waiting": count, "next_attempt_at": earliest.isoformat()}
        # The campaign and its job record finish together: a worker that dies here
        # leaves both RUNNING (the sweep runs it again), never one of them behind.
        async with in_transaction() as conn:
            if (
                not await Campaign.filter(id=campaign_id, status=CampaignStatus.RUNNING)
                .using_db(conn)
                .update(status=CampaignStatus.COMPLETED, finished_at=clock())
            ):
                raise JobCancelled(campaign.job_id)
            await campaign.refresh_from_db(using_db=conn)
            result = {"recipients": campaign.recipients, "sent": campaign.sent, "skipped": campaign.skipped}
            await tracker.succeed(result, using=conn)
        await tracker.announce()
        log.info("campaign %s completed: %s", campaign_id, result)
        return result
    except JobCancelled:
        await _set_status(campaign_id, CampaignStatus.CANCELLED, clock())
        log.info("campaign %s cancelled", campaign_id)
        return None
    except DatabaseBusy:
        raise  # not a failed run: arq runs it again shortly (jobs/worker.py)
    except Exception:
        log.exception("campaign %s: a run failed", campaign_id)
        await Campaign.filter(id=campaign_id).update(failed_runs=F("failed_runs") + 1)
        failures = await Campaign.filter(id=campaign_id).first().values_list("failed_runs", flat=True)
        try:
            if failures is not None and failures < MAX_ATTEMPTS:
                # Perhaps passing (a lost connection, a lock): the campaign stays RUNNING
                # and the sweep queues it again once its heartbeat is stale.
                await tracker.retry_later("A run failed unexpectedly (the error is logged); it will be retried.")
                return None
            await _set_status(campaign_id, CampaignStatus.FAILED, clock())
            await tracker.fail("The campaign failed unexpectedly (the error is logged).")
        except JobCancelled:
            pass
        return None


# -- arq tasks ---------------------------------------------------------------------------------


async def send_campaign(ctx: dict[str, Any], campaign_id: int) -> dict[str, Any] | None:
    return await run_campaign(campaign_id, ctx.get("hub"), ctx.get("redis"))


async def resume_campaigns(ctx: dict[str, Any], *, clock: Clock = utcnow) -> int:
    """Queue the runs that are due and may have no job: campaigns whose time has come,
    running ones with waiting recipients due, and running ones whose worker went silent
    (no batch for CAMPAIGN_STALE_SECONDS) with recipients left. Queuing a run that exists
    is harmless: arq refuses the same job id, and runs side by side send once."""
    now = clock()
    jobs = ctx.get("redis")
    queued = 0
    due = await Campaign.filter(
        status=CampaignStatus.SCHEDULED, scheduled_at__lte=now, job_id__isnull=False
    ).values_list("id", "job_id")
    for campaign_id, job_id in due:
        queued += await enqueue(jobs, "send_campaign", campaign_id, job_id=arq_job_id(job_id))
    stale = now - timedelta(seconds=settings.campaign_stale_seconds)
    running = await Campaign.filter(status=CampaignStatus.RUNNING).values_list("id", "heartbeat_at")
    for campaign_id, heartbeat in running:
        recipients = CampaignRecipient.filter(campaign_id=campaign_id)
        if await recipients.filter(status=RecipientStatus.WAITING, next_attempt_at__lte=now).exists():
            at = int(now.timestamp()) // 60 * 60
        elif (heartbeat is None or heartbeat < stale) and await recipients.filter(
            status=RecipientStatus.PENDING
        ).exists():
            at = int(heartbeat.timestamp()) if heartbeat else 0
        elif (
            heartbeat is not None and heartbeat < stale and not await recipients.filter(status__in=list(OPEN)).exists()
        ):
            at = int(heartbeat.timestamp())  # died between its last batch and completing
        else:
            continue
        queued += await enqueue(jobs, "send_campaign", campaign_id, job_id=keys.campaign_job(campaign_id, at))
    if queued:
        log.info("queued %d campaign runs", queued)
    return queued
