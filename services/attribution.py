"""Receipts of outreach and the attribution of replies to them.

Campaigns and proactive messages call `record_receipts` in the transaction that sends;
`receive_inbound` (resolvers/conversations.py) calls `attribute_reply` for every live
message from a contact. A credited reply marks its receipt, sets the conversation's
`attributed_source` and counts one `replied` on the campaign or proactive message.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.expressions import F

from core.db import SqlBuilder, bind_datetime
from domain.attribution import attributable, parse_source, source_key
from models.attribution import Receipt
from models.conversations import Conversation
from models.workspaces import Workspace

__all__ = ["attribute_reply", "record_receipts", "source_key"]

TABLE = Receipt._meta.db_table
# SQLite: four parameters a row, well under its limit per statement (core/bulk.py).
RECEIPTS_PER_STATEMENT = 5000
# Where each kind's `replied` counter lives (imported when first credited, so this module
# needs neither area to import it).
COUNTED = {"campaign": ("models.campaigns", "Campaign"), "proactive": ("models.proactive", "ProactiveMessage")}


async def record_receipts(workspace_id: int, source: str, contact_ids: Sequence[int], at: datetime) -> None:
    """One receipt per contact, in the caller's transaction, with no model object per
    contact (a campaign records a batch of thousands at a time): on PostgreSQL one INSERT
    from an array of contact ids (one parameter to bind, where a VALUES list binds four a
    row), on SQLite a few multi-row INSERTs."""
    parse_source(source)
    stamp = bind_datetime(at)
    connection = connections.get("default")
    columns = f"INSERT INTO {TABLE} (workspace_id, contact_id, source, sent_at)"
    if not contact_ids:
        return
    if SqlBuilder().postgres:
        q = SqlBuilder()
        sql = (
            f"{columns} SELECT {q.param(workspace_id)}::int, unnest({q.param(list(contact_ids))}::bigint[]), "
            f"{q.param(source)}::text, {q.param(stamp)}::timestamptz"
        )
        await connection.execute_query(sql, q.params)
        return
    for start in range(0, len(contact_ids), RECEIPTS_PER_STATEMENT):
        q = SqlBuilder()
        rows = ", ".join(
            f"({q.param(workspace_id)}, {q.param(c)}, {q.param(source)}, {q.param(stamp)})"
            for c in contact_ids[start : start + RECEIPTS_PER_STATEMENT]
        )
        await connection.execute_query(f"{columns} VALUES {rows}", q.params)


async def attribute_reply(conversation: Conversation, contact_id: int, at: datetime) -> str | None:
    """Credit the reply at `at` to the contact's newest receipt, if it is the first reply
    within the window; the source it was credited to, or None."""
    receipt = await Receipt.filter(contact_id=contact_id).order_by("-sent_at", "-id").first()
    if receipt is None or receipt.replied_at is not None:
        return None
    hours = (
        await Workspace.filter(id=conversation.workspace_id).first().values_list("attribution_window_hours", flat=True)
    )
    if hours is None or not attributable(receipt.sent_at, receipt.replied_at, at, timedelta(hours=int(hours))):
        return None
    # Conditional: of two replies racing, one is credited.
    if not await Receipt.filter(id=receipt.id, replied_at__isnull=True).update(replied_at=at):
        return None
    kind, source_id = parse_source(receipt.source)
    module, name = COUNTED[kind]
    counted = getattr(importlib.import_module(module), name)
    await counted.filter(id=source_id, workspace_id=conversation.workspace_id).update(replied=F("replied") + 1)
    if conversation.attributed_source is None:
        conversation.attributed_source = receipt.source
        await Conversation.filter(id=conversation.id, attributed_source__isnull=True).update(
            attributed_source=receipt.source
        )
    return receipt.source
