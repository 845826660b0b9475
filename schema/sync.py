"""CRM sync: `syncContacts` and `contactsChangedSince`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import contacts as m
from resolvers import sync as r
from schema.common import PageInfo, UserError, mutate, node_id, provided
from schema.contacts import FIELD_INPUTS, AttributeValueInput, Contact, ContactChangeKind, ContactFieldsInput


@strawberry.enum
class SyncContactStatus(Enum):
    CREATED = r.RowStatus.CREATED
    UPDATED = r.RowStatus.UPDATED
    UNCHANGED = r.RowStatus.UNCHANGED
    ERROR = r.RowStatus.ERROR


@strawberry.input(
    description="A contact to create or update: built-in fields, "
    "custom attributes (CRM-managed ones with contacts:crm), tags to add."
)
class SyncContactInput(ContactFieldsInput):
    attributes: list[AttributeValueInput] | None = None
    tags: list[str] | None = strawberry.field(
        default=None, description="Added to the contact's tags; tags are never removed by a sync."
    )


@strawberry.input
class SyncContactsInput:
    contacts: list[SyncContactInput] = strawberry.field(
        description="At most 1,000. Each is matched by externalId, else by the workspace's matching attribute."
    )
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="Sending the same key again (within the workspace) replays the first call's results "
        "without applying anything twice.",
    )


@strawberry.type
class SyncContactResult:
    index: int = strawberry.field(description="The row's position in the input.")
    status: SyncContactStatus
    contact_id: relay.GlobalID | None
    errors: list[UserError] = strawberry.field(
        description="Why the row was rejected (ERROR only); fields are paths into the input."
    )

    @strawberry.field(description="The contact as it is now.")
    async def contact(self, info: Info[Context, None]) -> Contact | None:
        if self.contact_id is None:
            return None
        found = await r.load_contact(info.context, int(self.contact_id.node_id))
        return Contact.from_model(found) if found else None


@strawberry.type
class SyncContactsPayload:
    results: list[SyncContactResult] | None = None
    replayed: bool = strawberry.field(
        default=False, description="True when the idempotency key was seen before: these are the first call's results."
    )
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    user_errors: list[UserError]


def _payload(outcome: r.SyncOutcome) -> dict[str, object]:
    return {
        "results": [
            SyncContactResult(
                index=x.index,
                status=SyncContactStatus(x.status),
                contact_id=node_id("Contact", x.contact_id) if x.contact_id is not None else None,
                errors=[UserError(field=e.field, code=e.code, message=e.message) for e in x.errors],
            )
            for x in outcome.results
        ],
        "replayed": outcome.replayed,
        "created": outcome.count(r.RowStatus.CREATED),
        "updated": outcome.count(r.RowStatus.UPDATED),
        "unchanged": outcome.count(r.RowStatus.UNCHANGED),
        "failed": outcome.count(r.RowStatus.ERROR),
    }


@strawberry.type
class ContactChange:
    """One entry of the change log: a contact created, updated or deleted."""

    cursor: str = strawberry.field(description="Pass it to contactsChangedSince to continue after this change.")
    kind: ContactChangeKind  # type: ignore[valid-type]
    contact_id: relay.GlobalID = strawberry.field(description="The contact's id (a deleted contact's too).")
    changed_at: datetime

    @strawberry.field(description="The contact as it is now; null once deleted.")
    async def contact(self, info: Info[Context, None]) -> Contact | None:
        found = await r.load_contact(info.context, int(self.contact_id.node_id))
        return Contact.from_model(found) if found else None

    @classmethod
    def from_model(cls, c: m.ContactChange) -> ContactChange:
        return cls(cursor=str(c.id), kind=c.kind, contact_id=node_id("Contact", c.contact_id), changed_at=c.at)


@strawberry.type
class ContactChangeEdge:
    cursor: str
    node: ContactChange


@strawberry.type
class ContactChangeConnection:
    edges: list[ContactChangeEdge]
    page_info: PageInfo
    _workspace_id: strawberry.Private[int]

    @strawberry.field(description="The newest change now: after a full resync, continue from here.")
    async def latest_cursor(self) -> str | None:
        return await r.latest_cursor(self._workspace_id)


@strawberry.type
class SyncQuery:
    @strawberry.field(
        description="Every contact change after `cursor` (a change's cursor, or a contactUpdated event's), "
        "oldest first, deletions included; no cursor starts at the oldest kept. "
        "The log keeps 90 days: an older cursor fails with CURSOR_EXPIRED, and the client resyncs in full."
    )
    async def contacts_changed_since(
        self, info: Info[Context, None], cursor: str | None = None, first: int | None = None
    ) -> ContactChangeConnection:
        page = await r.changes_since(info.context, cursor, first)
        edges = [ContactChangeEdge(cursor=str(c.id), node=ContactChange.from_model(c)) for c in page.changes]
        return ContactChangeConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=False,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=page.end_cursor,
            ),
            _workspace_id=page.workspace_id,
        )


def _row(row: SyncContactInput) -> r.SyncRow:
    return r.SyncRow(
        values=provided(row, FIELD_INPUTS),
        attributes=[(a.key, a.value) for a in row.attributes or []],
        tags=list(row.tags or []),
    )


@strawberry.type
class SyncMutation:
    @strawberry.mutation(
        description="Create or update up to 1,000 contacts (integrators: an API key with contacts:write). "
        "Each row gets a result; a bad row is rejected alone."
    )
    async def sync_contacts(self, info: Info[Context, None], input: SyncContactsInput) -> SyncContactsPayload:
        work = r.sync_contacts(info.context, [_row(c) for c in input.contacts], input.idempotency_key)
        return await mutate(SyncContactsPayload, work, _payload)
