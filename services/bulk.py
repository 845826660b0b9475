"""Bulk actions, as the API and the worker both need them: which contacts an action's target
holds (counted for `dryRun` and the confirmation, read by keyset for the worker), and what
one batch does to its contacts. Each action reuses the services the single-contact
mutations use, batched: the change log, contactUpdated events, webhooks and segment marks
(record_changes), conversation activity (close_conversation, record_activity), erasure
(erase_contact, one audit record per contact). The worker's loop, its transaction and
its high-water mark are jobs/bulk.py."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from tortoise import connections

from core import presence
from core.bulk import update_many
from core.clock import now
from core.db import SqlBuilder, bind_datetime
from core.events import Outbox
from core.permissions import Principal, PrincipalKind
from domain import segments as rules_lang
from models.bulk import BulkAction, BulkActionKind
from models.contacts import ChangeKind, Contact, ContactTag, DeletedContact
from models.conversations import ActivityKind, Conversation, ConversationStatus
from services import webhooks
from services.contacts import apply_attributes, erase_contact, record_changes
from services.conversations import close_conversation, record_activity
from services.exports import remove_erased_exports
from services.search import purge_deleted_text
from services.segments import attribute_types, matching_sql

# Contacts an action may name one by one (`target.ids`).
MAX_IDS = 10_000


# -- the target ------------------------------------------------------------------------------


async def _where(workspace_id: int, rules: dict[str, Any], at: datetime, q: SqlBuilder) -> str:
    """The rules as SQL over `contacts c`, parameters added to `q`."""
    group = rules_lang.parse(rules, await attribute_types(workspace_id))
    where, params = matching_sql(group, workspace_id, now=at, param_start=q.next_index)
    q.extend(params)
    return where


async def count_target(workspace_id: int, target: dict[str, Any], at: datetime) -> int:
    """How many contacts the target holds now: the existing ones of its ids, or the
    contacts its rules match."""
    if "ids" in target:
        found = 0
        ids = list(target["ids"])
        for start in range(0, len(ids), 1000):
            found += await Contact.filter(workspace_id=workspace_id, id__in=ids[start : start + 1000]).count()
        return found
    q = SqlBuilder()
    where = await _where(workspace_id, target["rules"], at, q)
    rows = await connections.get("default").execute_query_dict(
        f"SELECT count(*) AS n FROM contacts c WHERE {where}",  # noqa: S608
        q.params,
    )
    return int(rows[0]["n"])


async def next_ids(action: BulkAction, limit: int) -> tuple[list[int], int | None]:
    """The target's next contacts after the high-water mark, by id: (their ids, the new
    mark), or ([], None) when none are left. Named ids that no longer exist move the mark
    and are not returned (the caller counts them skipped)."""
    after = action.high_water
    if "ids" in action.target:
        chunk = sorted(i for i in action.target["ids"] if i > after)[:limit]
        if not chunk:
            return [], None
        ids = await Contact.filter(workspace_id=action.workspace_id, id__in=chunk).values_list("id", flat=True)
        return sorted(int(i) for i in ids), chunk[-1]
    q = SqlBuilder()
    where = await _where(action.workspace_id, action.target["rules"], action.created_at, q)
    rows = await connections.get("default").execute_query_dict(
        f"SELECT c.id FROM contacts c WHERE {where} AND c.id > {q.param(after)} ORDER BY c.id LIMIT {q.param(limit)}",  # noqa: S608
        q.params,
    )
    ids = [int(r["id"]) for r in rows]
    return ids, (ids[-1] if ids else None)


# -- one batch -------------------------------------------------------------------------------


@dataclass
class BatchResult:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    # DELETE: the audit records written, for the work after the commit (erased_after_commit).
    erased: list[DeletedContact] = field(default_factory=list)


async def apply_batch(outbox: Outbox, action: BulkAction, ids: list[int]) -> BatchResult:
    """The action on these contacts (of the action's workspace), in the caller's
    transaction. A contact the action would not change is skipped."""
    ws, args = action.workspace_id, action.args
    kind = action.action
    if kind in (BulkActionKind.TAG, BulkActionKind.UNTAG):
        changed = await _tag(ws, ids, list(args["tags"]), remove=kind is BulkActionKind.UNTAG)
    elif kind is BulkActionKind.SET_ATTRIBUTE:
        changed = await _set_attribute(ids, args["key"], args.get("value"))
        if args.get("crm_managed") and args.get("actor_agent_id"):
            # An agent's edit of a CRM-managed attribute is pushed to the CRM later, as
            # updateContact's is (services/webhooks.note_crm_edits).
            agent = Principal(kind=PrincipalKind.AGENT, workspace_id=ws, agent_id=args["actor_agent_id"])
            await webhooks.note_agent_crm_edits(agent, ws, {c.id: {args["key"]} for c in changed})
    elif kind is BulkActionKind.BLOCK:
        changed = await _block(outbox, ids, args.get("actor_agent_id"))
    elif kind is BulkActionKind.RESOLVE_CONVERSATIONS:
        touched = await _resolve(outbox, ids, args.get("actor_agent_id"))
        return BatchResult(done=len(touched), skipped=len(ids) - len(touched))
    elif kind is BulkActionKind.ASSIGN_CONVERSATIONS:
        touched = await _assign(outbox, ids, int(args["assignee_id"]), args.get("actor_agent_id"))
        return BatchResult(done=len(touched), skipped=len(ids) - len(touched))
    elif kind is BulkActionKind.DELETE:
        erased = []
        for contact in await Contact.filter(id__in=ids).order_by("id"):
            erased.append(
                await erase_contact(
                    outbox,
                    contact,
                    deleted_by_id=args.get("deleted_by_id"),
                    deleted_by_name=args["deleted_by_name"],
                    purge=False,
                )
            )
        await purge_deleted_text()  # once a batch: it merges the whole SQLite index
        return BatchResult(done=len(erased), skipped=len(ids) - len(erased), erased=erased)
    else:  # pragma: no cover - BulkActionKind has no other member
        raise ValueError(kind)
    if changed:
        written: list[tuple[Contact | int, ChangeKind]] = [(c, ChangeKind.UPDATED) for c in changed]
        await record_changes(outbox, ws, written)
    return BatchResult(done=len(changed), skipped=len(ids) - len(changed))


async def erased_after_commit(hub: Any, workspace_id: int, records: list[DeletedContact], ids: list[int]) -> None:
    """What deleteContact does after its commit, for a batch: remove the export files
    that may hold these contacts (their links already answer 410) and their presence."""
    if not records:
        return
    await remove_erased_exports(workspace_id, max(r.deleted_at for r in records))
    if hub is not None:
        with contextlib.suppress(RedisError):  # the entries expire within presence.TTL anyway
            for contact_id in ids:
                await presence.forget(hub.redis, workspace_id, "contact", contact_id)


async def _tag(workspace_id: int, ids: list[int], names: list[str], *, remove: bool) -> list[int]:
    """The ids of the contacts whose tags changed."""
    if remove:
        had = await ContactTag.filter(contact_id__in=ids, name__in=names).values_list("contact_id", flat=True)
        touched = sorted({int(c) for c in had})
        if touched:
            await ContactTag.filter(contact_id__in=touched, name__in=names).delete()
    else:
        # One INSERT … SELECT: the database skips the tags a contact already has.
        # Parameters in the order they appear: SQLite's ? are positional.
        q = SqlBuilder()
        stamp = q.param(bind_datetime(now()))
        cast = "::text" if q.postgres else ""
        names_sql = " UNION ALL ".join(f"SELECT {q.param(n)}{cast} AS name" for n in names)
        sql = (
            "INSERT INTO contact_tags (workspace_id, contact_id, name, created_at) "  # noqa: S608
            f"SELECT c.workspace_id, c.id, t.name, {stamp} FROM contacts c "
            f"CROSS JOIN ({names_sql}) t WHERE c.workspace_id = {q.param(workspace_id)} AND c.id IN {q.in_list(ids)} "
            "ON CONFLICT (contact_id, name) DO NOTHING RETURNING contact_id"
        )
        rows = await connections.get("default").execute_query_dict(sql, q.params)
        touched = sorted({int(r["contact_id"]) for r in rows})
    if touched:
        await Contact.filter(id__in=touched).update(updated_at=now())
    return touched


async def _set_attribute(ids: list[int], key: str, value: Any) -> list[Contact]:
    stamp = now()
    changed = []
    for contact in await Contact.filter(id__in=ids):
        if (contact.attributes or {}).get(key) == value:
            continue
        apply_attributes(contact, {key: value})
        contact.updated_at = stamp
        changed.append(contact)
    await update_many(Contact, changed, ["attributes", "updated_at"])
    return changed


async def _block(outbox: Outbox, ids: list[int], actor: int | None) -> list[Contact]:
    contacts = list(await Contact.filter(id__in=ids, blocked=False))
    if not contacts:
        return []
    stamp = now()
    await Contact.filter(id__in=[c.id for c in contacts]).update(blocked=True, updated_at=stamp)
    for contact in contacts:
        contact.blocked, contact.updated_at = True, stamp
    # Blocking resolves the contacts' open and snoozed conversations, as blockContact does.
    await _resolve(outbox, [c.id for c in contacts], actor, reason="contact_blocked")
    return contacts


async def _open_conversations(ids: list[int]) -> list[Conversation]:
    return list(
        await Conversation.filter(contact_id__in=ids).exclude(status=ConversationStatus.RESOLVED).order_by("id")
    )


async def _resolve(outbox: Outbox, ids: list[int], actor: int | None, *, reason: str = "bulk_action") -> set[int]:
    touched = set()
    for conversation in await _open_conversations(ids):
        await close_conversation(outbox, conversation, actor, reason=reason)
        touched.add(conversation.contact_id)
    return touched


async def _assign(outbox: Outbox, ids: list[int], assignee_id: int, actor: int | None) -> set[int]:
    touched = set()
    for conversation in await _open_conversations(ids):
        if conversation.assignee_id == assignee_id:
            continue
        previous = {"assigneeId": conversation.assignee_id, "teamId": conversation.team_id}
        conversation.assignee_id = assignee_id
        await conversation.save(update_fields=["assignee_id", "updated_at"])
        await record_activity(outbox, conversation, ActivityKind.ASSIGNED, actor, previous=previous)
        touched.add(conversation.contact_id)
    return touched
