"""Webhook events, as the rest of the code emits them (endpoints and their delivery log,
the API side, are resolvers/webhooks.py).

Emitting is one INSERT … SELECT inside the caller's transaction: a delivery row for every
enabled endpoint of the workspace subscribed to the event's type, written by the database
without loading endpoints or events into Python. After the commit the delivery jobs are
queued (jobs/webhooks.py); a delivery whose job was never queued (the emitter had no
queue, or Redis was away) is picked up by the `dispatch_webhooks` sweep.

    await emit(ctx.outbox, workspace_id, [(WebhookEventType.CONTACT_UPDATED, {"contact": {...}})])

The body every endpoint receives:

    {"id": "evt_…", "type": "contact.updated", "createdAt": "…", "workspaceId": "…", "data": {…}}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tortoise import connections
from tortoise.expressions import Subquery

from core.bulk import update_many
from core.clock import now
from core.db import SqlBuilder, bind_datetime
from core.events import Outbox
from core.permissions import Principal, PrincipalKind
from core.queue import enqueue
from core.scoping import decode_global_id, encode_global_id
from models.contacts import AttributeDefinition, ChangeKind, Contact
from models.conversations import Conversation
from models.segments import Segment
from models.sync import CrmPendingPush
from models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEventType

# At most this many delivery jobs are queued right after a commit; more are left to one
# `dispatch_webhooks` run, so a bulk sync does not wait on thousands of enqueues.
DIRECT_ENQUEUE = 20


# Events per INSERT … SELECT: 3 parameters each, well under both databases' limits.
EMIT_CHUNK = 2000


_CHANGE_TYPES = {
    ChangeKind.CREATED: WebhookEventType.CONTACT_CREATED,
    ChangeKind.UPDATED: WebhookEventType.CONTACT_UPDATED,
    ChangeKind.DELETED: WebhookEventType.CONTACT_DELETED,
}


def deliver_job_id(delivery_id: int) -> str:
    """arq refuses a second job under this id while one is queued, retrying or running."""
    from core import keys

    return f"{keys.arq_queue()}:webhook:{delivery_id}"


# -- emitting events -----------------------------------------------------------------------


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def envelope(
    event_id: str, kind: WebhookEventType, workspace_id: int, at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": kind.value,
        "createdAt": at.isoformat(),
        "workspaceId": encode_global_id("Workspace", workspace_id),
        "data": data,
    }


def _type_match(postgres: bool) -> str:
    # JSON membership in each dialect: jsonb's ? operator, SQLite's json_each.
    if postgres:
        return "e.event_types ? v.event_type"
    return "EXISTS (SELECT 1 FROM json_each(e.event_types) j WHERE j.value = v.event_type)"


async def emit(
    outbox: Outbox | None, workspace_id: int, events: Iterable[tuple[WebhookEventType, dict[str, Any]]]
) -> list[int]:
    """Deliveries of `events` (type, data) to the workspace's subscribed endpoints, in the
    current transaction; their jobs are queued after the commit. Returns the delivery ids."""
    stamp = now()
    ids: list[int] = []
    batch: list[tuple[WebhookEventType, dict[str, Any]]] = []
    for item in events:
        batch.append(item)
        if len(batch) == EMIT_CHUNK:
            ids += await _insert_deliveries(workspace_id, batch, stamp)
            batch = []
    if batch:
        ids += await _insert_deliveries(workspace_id, batch, stamp)
    if ids and outbox is not None:
        _queue_after_commit(outbox, ids)
    return ids


async def _insert_deliveries(
    workspace_id: int, events: list[tuple[WebhookEventType, dict[str, Any]]], stamp: datetime
) -> list[int]:
    q = SqlBuilder()
    rows = []
    for kind, data in events:
        event_id = new_event_id()
        body = json.dumps(envelope(event_id, kind, workspace_id, stamp, data), separators=(",", ":"))
        # Parameters in the order they appear: SQLite's ? are positional.
        head = f"({q.param(event_id)}, {q.param(kind.value)}, "
        payload = f"{q.param(body)}::jsonb" if q.postgres else q.param(body)
        contact = f"{q.param(_about_contact(data))}::integer" if q.postgres else q.param(_about_contact(data))
        rows.append(f"{head}{payload}, {contact})")
    sql = (
        f"WITH v(event_id, event_type, payload, contact_id) AS (VALUES {', '.join(rows)}) "  # noqa: S608
        "INSERT INTO webhook_deliveries "
        "(workspace_id, endpoint_id, event_id, event_type, payload, contact_id, status, attempts, next_attempt_at, "
        "created_at) SELECT e.workspace_id, e.id, v.event_id, v.event_type, v.payload, v.contact_id, "
        f"{q.param(DeliveryStatus.PENDING.value)}, 0, "
        f"{q.param(bind_datetime(stamp))}, {q.param(bind_datetime(stamp))} "
        f"FROM webhook_endpoints e JOIN v ON {_type_match(q.postgres)} "
        f"WHERE e.workspace_id = {q.param(workspace_id)} AND e.enabled "
        "RETURNING id"
    )
    found = await connections.get("default").execute_query_dict(sql, q.params)
    return [int(row["id"]) for row in found]


def _about_contact(data: dict[str, Any]) -> int | None:
    """The contact an event's data is about (its `contact`, or its conversation's)."""
    contact = data.get("contact") or {}
    gid = contact.get("id") or (data.get("conversation") or {}).get("contactId")
    decoded = decode_global_id(gid) if gid else None
    return decoded[1] if decoded is not None and decoded[0] == "Contact" else None


async def erase_deliveries(contact_id: int) -> int:
    """deleteContact: remove every delivery about the contact (with its attempts), sent or
    not; the contact.deleted event emitted after it is kept. Two statements on the index,
    in the caller's transaction. Returns how many deliveries were removed."""
    about = Subquery(WebhookDelivery.filter(contact_id=contact_id).values("id"))
    await WebhookAttempt.filter(delivery_id__in=about).delete()
    return int(await WebhookDelivery.filter(contact_id=contact_id).delete())


async def move_deliveries(from_contact_id: int, to_contact_id: int) -> None:
    """mergeContacts: the secondary's deliveries become the primary's, so that deleting
    the primary erases them as well. One UPDATE on the index, in the caller's transaction."""
    await WebhookDelivery.filter(contact_id=from_contact_id).update(contact_id=to_contact_id)


def _queue_after_commit(outbox: Outbox, delivery_ids: list[int]) -> None:
    async def run() -> None:
        if len(delivery_ids) > DIRECT_ENQUEUE:
            await enqueue(outbox.jobs, "dispatch_webhooks")
            return
        for delivery_id in delivery_ids:
            await enqueue(outbox.jobs, "deliver_webhook", delivery_id, job_id=deliver_job_id(delivery_id))

    outbox.after_commit(run)


async def subscribed_types(workspace_id: int) -> set[str]:
    """Event types some enabled endpoint of the workspace receives (a few rows at most)."""
    rows = await WebhookEndpoint.filter(workspace_id=workspace_id, enabled=True).values_list("event_types", flat=True)
    return {t for types in rows for t in types or []}


# -- what the events say -------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def contact_data(c: Contact) -> dict[str, Any]:
    """A contact as webhooks carry it: camelCase, global ids, custom attributes by key."""
    return {
        "id": encode_global_id("Contact", c.id),
        "externalId": c.external_id,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "country": c.country,
        "city": c.city,
        "timeZone": c.time_zone,
        "locale": c.locale,
        "browserLanguage": c.browser_language,
        "os": c.os,
        "browser": c.browser,
        "ip": c.ip,
        "referrer": c.referrer,
        "platform": c.platform,
        "gdprConsent": c.gdpr_consent,
        "gdprConsentAt": _iso(c.gdpr_consent_at),
        "smsConsent": c.sms_consent.value if c.sms_consent else None,
        "smsConsentAt": _iso(c.sms_consent_at),
        "vip": c.vip,
        "blocked": c.blocked,
        "attributes": dict(c.attributes or {}),
        "firstSeenAt": _iso(c.first_seen_at),
        "lastSeenAt": _iso(c.last_seen_at),
        "createdAt": _iso(c.created_at),
        "updatedAt": _iso(c.updated_at),
    }


def contact_event(
    contact: Contact, kind: ChangeKind, cursor: int, merged_into: int | None = None
) -> tuple[WebhookEventType, dict[str, Any]]:
    """contact.created / updated / deleted; `cursor` is the change's position in
    contactsChangedSince. A deleted contact is named by its ids only."""
    if kind is ChangeKind.DELETED:
        data: dict[str, Any] = {
            "contact": {"id": encode_global_id("Contact", contact.id), "externalId": contact.external_id}
        }
        if merged_into is not None:
            data["mergedIntoId"] = encode_global_id("Contact", merged_into)
    else:
        data = {"contact": contact_data(contact)}
    data["cursor"] = str(cursor)
    return _CHANGE_TYPES[kind], data


def change_type(kind: ChangeKind) -> WebhookEventType:
    return _CHANGE_TYPES[kind]


async def contact_changed(outbox: Outbox, contact: Contact, kind: ChangeKind, cursor: int, **extra: Any) -> None:
    """The record_change hook (services/contacts.py): one change, one event."""
    await emit(outbox, contact.workspace_id, [contact_event(contact, kind, cursor, extra.get("mergedInto"))])


async def conversation_status_changed(
    outbox: Outbox, conversation: Conversation, previous: str | None, actor_agent_id: int | None, reason: str | None
) -> None:
    """The record_activity hook (services/conversations.py), for status changes: the
    conversation.status_changed event, then the CRM-managed attributes agents edited on
    its contact since the last push (contact.crm_attributes_changed)."""
    ws = conversation.workspace_id
    data = {
        "conversation": {
            "id": encode_global_id("Conversation", conversation.id),
            "status": conversation.status.value,
            "previousStatus": previous,
            "contactId": encode_global_id("Contact", conversation.contact_id),
            "assigneeId": encode_global_id("Agent", conversation.assignee_id) if conversation.assignee_id else None,
            "teamId": encode_global_id("Team", conversation.team_id) if conversation.team_id else None,
            "channelId": encode_global_id("Channel", conversation.channel_id),
            "snoozedUntil": _iso(conversation.snoozed_until),
        },
        "actorAgentId": encode_global_id("Agent", actor_agent_id) if actor_agent_id else None,
        "reason": reason,
    }
    events: list[tuple[WebhookEventType, dict[str, Any]]] = [(WebhookEventType.CONVERSATION_STATUS_CHANGED, data)]
    push = await CrmPendingPush.filter(contact_id=conversation.contact_id).first()
    # Deleted first: a concurrent status change pushes these edits once, not twice.
    if push is not None and await CrmPendingPush.filter(id=push.id).delete():
        contact = await Contact.get_or_none(id=conversation.contact_id)
        if contact is not None:
            events.append(
                (
                    WebhookEventType.CONTACT_CRM_ATTRIBUTES_CHANGED,
                    _crm_push(contact, push, conversation, data["conversation"]),
                )
            )
    await emit(outbox, ws, events)


def _crm_push(
    contact: Contact, push: CrmPendingPush, conversation: Conversation, conversation_data: dict[str, Any]
) -> dict[str, Any]:
    values = contact.attributes or {}
    return {
        "contact": {
            "id": encode_global_id("Contact", contact.id),
            "externalId": contact.external_id,
            "email": contact.email,
        },
        # Current values (null: cleared) of the CRM-managed attributes agents edited.
        "attributes": {key: values.get(key) for key in push.attribute_keys},
        "editedByAgentId": encode_global_id("Agent", push.agent_id) if push.agent_id else None,
        "editedAt": _iso(push.edited_at),
        "conversation": conversation_data,
    }


async def note_crm_edits(principal: Principal | None, contact: Contact, attributes: dict[str, Any]) -> None:
    """The update_contact hook (resolvers/contacts.py): an agent wrote CRM-managed
    attributes, so they are pushed to the CRM when a conversation of the contact next
    changes status. Integrators' writes are the CRM's own: nothing to push back."""
    if principal is None or principal.kind is not PrincipalKind.AGENT or not attributes:
        return
    crm_keys = set(
        await AttributeDefinition.filter(
            workspace_id=contact.workspace_id, key__in=list(attributes), crm_managed=True
        ).values_list("key", flat=True)
    )
    await note_agent_crm_edits(principal, contact.workspace_id, {contact.id: crm_keys})


async def note_agent_crm_edits(principal: Principal, workspace_id: int, edits: dict[int, set[str]]) -> None:
    """Remember, per contact, the CRM-managed attribute keys an agent edited (merged with
    edits not pushed yet): two statements for any number of contacts."""
    edits = {contact_id: keys for contact_id, keys in edits.items() if keys}
    if principal.kind is not PrincipalKind.AGENT or not edits:
        return
    stamp = now()
    pending = {p.contact_id: p for p in await CrmPendingPush.filter(contact_id__in=list(edits))}
    fresh = []
    for contact_id, keys in edits.items():
        push = pending.get(contact_id)
        if push is None:
            fresh.append(
                CrmPendingPush(
                    workspace_id=workspace_id,
                    contact_id=contact_id,
                    attribute_keys=sorted(keys),
                    agent_id=principal.agent_id,
                    edited_at=stamp,
                )
            )
        else:
            push.attribute_keys = sorted(set(push.attribute_keys) | keys)
            push.agent_id, push.edited_at = principal.agent_id, stamp
    if fresh:
        await CrmPendingPush.bulk_create(fresh)
    if pending:
        await update_many(CrmPendingPush, list(pending.values()), ["attribute_keys", "agent_id", "edited_at"])


async def segment_membership_changed(segment: Segment, kind: str, contact_ids: list[int]) -> None:
    """The segment refresh hook (jobs/segments.py), once per chunk of joins ("joined") or
    leaves ("left"), inside the refresh's transaction; the `dispatch_webhooks` sweep
    queues the delivery jobs."""
    event_type = WebhookEventType.SEGMENT_JOINED if kind == "joined" else WebhookEventType.SEGMENT_LEFT
    if not contact_ids or event_type.value not in await subscribed_types(segment.workspace_id):
        return
    data = {
        "segment": {"id": encode_global_id("Segment", segment.id), "name": segment.name},
        "contactIds": [encode_global_id("Contact", i) for i in contact_ids],
    }
    await emit(None, segment.workspace_id, [(event_type, data)])
