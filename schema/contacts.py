"""Contacts, their attributes, tags, notes and timeline; the deletion audit;
`contactUpdated` (attribute definitions: schema/attributes.py)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from core import keys
from core.context import Context
from core.errors import Code, PublicError
from core.permissions import Permission
from domain.contact_fields import camel
from models import contacts as m
from resolvers import contacts as r
from runtime.guards import guard
from runtime.subscriptions import listen, still_allowed
from schema.attributes import AttributeDefinition, attribute_definitions, shown_to_contacts
from schema.common import (
    JSON,
    Connection,
    ContactIdInput,
    DeletePayload,
    UserError,
    build,
    gid,
    mutate,
    node_id,
    provided,
    selected_names,
    to_connection,
)
from schema.workspaces import Agent

SmsConsent = strawberry.enum(m.SmsConsent, name="SmsConsent")
EventKind = strawberry.enum(m.EventKind, name="EventKind")
ContactChangeKind = strawberry.enum(m.ChangeKind, name="ContactChangeKind")

CONTACT_FIELDS = (
    "name",
    "email",
    "phone",
    "external_id",
    "country",
    "city",
    "time_zone",
    "locale",
    "browser_language",
    "os",
    "browser",
    "ip",
    "referrer",
)


@strawberry.type
class AttributeValue:
    key: str
    value: JSON | None
    definition: AttributeDefinition


@guard(lambda ctx, _: ctx.lacks(Permission.CONTACTS_READ))
@strawberry.type
class ContactNote(relay.Node):
    id: relay.NodeID[int]
    body: str
    created_at: datetime
    _author_id: strawberry.Private[int | None]

    @strawberry.field
    async def author(self, info: Info[Context, None]) -> Agent | None:
        agent = await r.load_agent(info.context, self._author_id)
        return Agent.from_model(agent) if agent else None

    @classmethod
    def from_model(cls, n: m.ContactNote) -> ContactNote:
        return cls(id=n.id, body=n.body, created_at=n.created_at, _author_id=n.author_id)


@guard(lambda ctx, e: r.event_refusal(ctx, e._contact_id, e.kind, e._just_written))
@strawberry.type
class ContactEvent(relay.Node):
    """A page view or a named event on a contact's timeline. A contact session sees its
    own page views only (and the event its trackEvent just wrote)."""

    id: relay.NodeID[int]
    kind: EventKind  # type: ignore[valid-type]
    name: str
    url: str | None
    title: str | None
    properties: JSON
    occurred_at: datetime
    _contact_id: strawberry.Private[int]
    _just_written: strawberry.Private[bool] = False

    @classmethod
    def from_model(cls, e: m.ContactEvent, *, just_written: bool = False) -> ContactEvent:
        return cls(
            id=e.id,
            kind=e.kind,
            name=e.name,
            url=e.url,
            title=e.title,
            properties=e.properties,
            occurred_at=e.occurred_at,
            _contact_id=e.contact_id,
            _just_written=just_written,
        )


@guard(lambda ctx, c: r.contact_refusal(ctx, c.id))
@strawberry.type(
    description="Agents and API keys with contacts:read see every contact of the workspace; "
    "a contact session sees itself only, without tags and with its visible attributes that are not CRM-managed."
)
class Contact(relay.Node):
    id: relay.NodeID[int]
    name: str | None
    email: str | None
    phone: str | None = strawberry.field(description="E.164, e.g. +14155550100.")
    external_id: str | None
    country: str | None
    city: str | None
    time_zone: str | None
    locale: str | None
    browser_language: str | None
    os: str | None
    browser: str | None
    ip: str | None
    referrer: str | None
    platform: str | None = strawberry.field(description="The kind of channel the contact first came from.")
    gdpr_consent: bool
    gdpr_consent_at: datetime | None
    sms_consent: SmsConsent  # type: ignore[valid-type]
    sms_consent_at: datetime | None
    vip: bool
    blocked: bool
    first_seen_at: datetime | None
    last_seen_at: datetime = strawberry.field(description="Last interaction; the contact list sorts by it.")
    created_at: datetime
    updated_at: datetime
    _attributes: strawberry.Private[dict[str, object]]

    @strawberry.field(description="Agents' tags: empty in a contact session.")
    async def tags(self, info: Info[Context, None]) -> list[str]:
        if info.context.viewing_contact_id is not None:
            return []
        return await r.load_tags(info.context, self.id)

    @strawberry.field(
        description="Values of the workspace's attribute definitions, in their order "
        "(in a contact session, the visible ones that are not CRM-managed)."
    )
    async def attributes(self, info: Info[Context, None]) -> list[AttributeValue]:
        definitions = await r.load_definitions(info.context)
        narrow = info.context.viewing_contact_id is not None
        return [
            AttributeValue(key=d.key, value=self._attributes[d.key], definition=AttributeDefinition.from_model(d))
            for d in definitions
            if d.key in self._attributes and not (narrow and not shown_to_contacts(d))
        ]

    @strawberry.field
    async def notes(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[ContactNote]:
        contact = await r.contact_by_id(info.context, self.id)
        assert contact is not None
        return to_connection(
            await r.list_notes(info.context, contact, first=first, after=after), ContactNote.from_model
        )

    @strawberry.field(description="The timeline: page views and events, newest first.")
    async def events(
        self,
        info: Info[Context, None],
        kind: EventKind | None = None,
        first: int | None = None,
        after: str | None = None,  # type: ignore[valid-type]
    ) -> Connection[ContactEvent]:
        contact = await r.contact_by_id(info.context, self.id)
        assert contact is not None
        return to_connection(
            await r.list_events(info.context, contact, kind=kind, first=first, after=after), ContactEvent.from_model
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Contact:
        """From a `.values()` row holding the columns of the selected fields (`columns_for`);
        the fields not selected stay empty and are never read."""
        values = _EMPTY_ROW.copy()
        values.update(row)
        values["_attributes"] = values.pop("attributes", None) or {}
        consent = values["sms_consent"]
        if consent is not None:
            values["sms_consent"] = m.SmsConsent(consent)
        return build(cls, values)

    @classmethod
    def from_model(cls, c: m.Contact) -> Contact:
        return cls(
            id=c.id,
            **{f: getattr(c, f) for f in CONTACT_FIELDS},
            platform=c.platform,
            gdpr_consent=c.gdpr_consent,
            gdpr_consent_at=c.gdpr_consent_at,
            sms_consent=c.sms_consent,
            sms_consent_at=c.sms_consent_at,
            vip=c.vip,
            blocked=c.blocked,
            first_seen_at=c.first_seen_at,
            last_seen_at=c.last_seen_at,
            created_at=c.created_at,
            updated_at=c.updated_at,
            _attributes=dict(c.attributes or {}),
        )


@strawberry.type
class ErasedCount:
    """How many of one kind of thing a contact's deletion removed."""

    kind: str = strawberry.field(
        description="messages, conversations, notes, events, tags, webhookDeliveries, pushDevices, "
        "exportFiles or presence."
    )
    count: int


@strawberry.type
class DeletedContact(relay.Node):
    """The audit record of a deleted contact: masked hints, platform, date and who."""

    id: relay.NodeID[int]
    name_hint: str | None
    email_hint: str | None
    phone_hint: str | None
    platform: str | None
    deleted_by_name: str
    deleted_at: datetime
    erased: list[ErasedCount] = strawberry.field(
        description="What the deletion removed, by kind (empty for deletions before this was recorded)."
    )

    @classmethod
    def from_model(cls, d: m.DeletedContact) -> DeletedContact:
        return cls(
            id=d.id,
            name_hint=d.name_hint,
            email_hint=d.email_hint,
            phone_hint=d.phone_hint,
            platform=d.platform,
            deleted_by_name=d.deleted_by_name,
            deleted_at=d.deleted_at,
            erased=[ErasedCount(kind=k, count=int(n)) for k, n in (d.erased or {}).items()],
        )


@strawberry.type
class ContactUpdate:
    """A change to a contact, as `contactUpdated` delivers it."""

    cursor: str = strawberry.field(description="Position in the change log: catch up after it with a query.")
    kind: ContactChangeKind  # type: ignore[valid-type]
    contact_id: relay.GlobalID
    contact: Contact | None = strawberry.field(description="The contact now; null once deleted.")
    merged_into_id: relay.GlobalID | None = None


# -- inputs ----------------------------------------------------------------------------------


@strawberry.input
class AttributeValueInput:
    key: str
    value: JSON | None = strawberry.field(description="Typed per the definition; null clears it.")


def _attribute_items(items: list[AttributeValueInput] | None) -> list[tuple[str, object]]:
    return [(a.key, a.value) for a in items or []]


@strawberry.input
class ContactFieldsInput:
    name: str | None = strawberry.UNSET
    email: str | None = strawberry.UNSET
    phone: str | None = strawberry.UNSET
    external_id: str | None = strawberry.UNSET
    country: str | None = strawberry.UNSET
    city: str | None = strawberry.UNSET
    time_zone: str | None = strawberry.UNSET
    locale: str | None = strawberry.UNSET
    browser_language: str | None = strawberry.UNSET
    os: str | None = strawberry.UNSET
    browser: str | None = strawberry.UNSET
    ip: str | None = strawberry.UNSET
    referrer: str | None = strawberry.UNSET
    vip: bool | None = strawberry.UNSET
    gdpr_consent: bool | None = strawberry.UNSET
    sms_consent: SmsConsent | None = strawberry.UNSET  # type: ignore[valid-type]


FIELD_INPUTS = (*CONTACT_FIELDS, "vip", "gdpr_consent", "sms_consent")

# Plain columns a Contact row carries (sms_consent is converted on its own).
ROW_FIELDS = (
    *CONTACT_FIELDS,
    "platform",
    "gdpr_consent",
    "gdpr_consent_at",
    "sms_consent_at",
    "vip",
    "blocked",
    "first_seen_at",
    "last_seen_at",
    "created_at",
    "updated_at",
)
_COLUMN_OF = {camel(f): f for f in (*ROW_FIELDS, "sms_consent", "attributes")}
# A row's object before its columns are filled in: the fields not selected stay None.
_EMPTY_ROW: dict[str, Any] = dict.fromkeys(("id", *ROW_FIELDS, "sms_consent"))


def columns_for(selected: set[str]) -> tuple[str, ...]:
    """The contact columns the selected GraphQL fields read (the id always)."""
    return ("id", *sorted({_COLUMN_OF[name] for name in selected if name in _COLUMN_OF}))


@strawberry.input
class CreateContactInput(ContactFieldsInput):
    attributes: list[AttributeValueInput] | None = None
    tags: list[str] | None = None


@strawberry.input
class UpdateContactInput(ContactFieldsInput):
    id: relay.GlobalID
    attributes: list[AttributeValueInput] | None = None


@strawberry.input
class TagContactInput:
    contact_id: relay.GlobalID
    tags: list[str]


@strawberry.input
class MergeContactsInput:
    primary_id: relay.GlobalID = strawberry.field(description="Survives; its values win conflicts.")
    secondary_id: relay.GlobalID = strawberry.field(description="Folded into the primary and removed.")


@strawberry.input
class AddContactNoteInput:
    contact_id: relay.GlobalID
    body: str


@strawberry.input
class TrackEventInput:
    contact_id: relay.GlobalID | None = strawberry.field(default=None, description="Omit in a contact session.")
    kind: EventKind = m.EventKind.EVENT  # type: ignore[valid-type]
    name: str | None = strawberry.field(
        default=None, description="Required for events; page views default to page_view."
    )
    url: str | None = None
    title: str | None = None
    properties: JSON | None = None
    occurred_at: datetime | None = None


# -- payloads --------------------------------------------------------------------------------


@strawberry.type
class ContactPayload:
    contact: Contact | None = None
    user_errors: list[UserError]


@strawberry.type
class DeleteContactPayload:
    deleted_contact_id: relay.GlobalID | None = None
    audit_record: DeletedContact | None = None
    user_errors: list[UserError]


@strawberry.type
class ContactNotePayload:
    note: ContactNote | None = None
    user_errors: list[UserError]


@strawberry.type
class TrackEventPayload:
    event: ContactEvent | None = None
    user_errors: list[UserError]


def _contact(c: m.Contact) -> dict[str, object]:
    return {"contact": Contact.from_model(c)}


# -- root fields -----------------------------------------------------------------------------


@strawberry.type
class ContactQuery:
    @strawberry.field(
        description="Contacts, most recent interaction first; search matches name, e-mail, phone and "
        "searchable text, list and date attributes (case-insensitive); segmentId keeps a segment's members."
    )
    async def contacts(
        self,
        info: Info[Context, None],
        search: str | None = None,
        segment_id: relay.GlobalID | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Contact]:
        page = await r.list_contacts(
            info.context,
            search=search,
            first=first,
            after=after,
            last=last,
            before=before,
            segment_gid=str(segment_id) if segment_id is not None else None,
            columns=columns_for(selected_names(info, "edges", "node")),
        )
        return to_connection(page, Contact.from_row)

    @strawberry.field
    async def contact(self, info: Info[Context, None], id: relay.GlobalID) -> Contact | None:
        found = await r.get_contact(info.context, str(id))
        return Contact.from_model(found) if found else None

    # schema/attributes.py's field, mounted here: the schema has always listed it between
    # `contact` and `deletedContacts`.
    attribute_definitions = strawberry.field(resolver=attribute_definitions)

    @strawberry.field(description="Audit records of deleted contacts (owners and admins).")
    async def deleted_contacts(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[DeletedContact]:
        return to_connection(await r.list_deleted(info.context, first=first, after=after), DeletedContact.from_model)


@strawberry.type
class ContactMutation:
    @strawberry.mutation
    async def create_contact(self, info: Info[Context, None], input: CreateContactInput) -> ContactPayload:
        work = r.create_contact(
            info.context, provided(input, FIELD_INPUTS), _attribute_items(input.attributes), input.tags or []
        )
        return await mutate(ContactPayload, work, _contact)

    @strawberry.mutation
    async def update_contact(self, info: Info[Context, None], input: UpdateContactInput) -> ContactPayload:
        work = r.update_contact(
            info.context, str(input.id), provided(input, FIELD_INPUTS), _attribute_items(input.attributes)
        )
        return await mutate(ContactPayload, work, _contact)

    @strawberry.mutation(
        description="Owners and admins: removes the contact and everything of it, leaving an audit record."
    )
    async def delete_contact(self, info: Info[Context, None], input: ContactIdInput) -> DeleteContactPayload:
        return await mutate(
            DeleteContactPayload,
            r.delete_contact(info.context, str(input.id)),
            lambda d: {"deleted_contact_id": input.id, "audit_record": DeletedContact.from_model(d)},
        )

    @strawberry.mutation
    async def block_contact(self, info: Info[Context, None], input: ContactIdInput) -> ContactPayload:
        return await mutate(ContactPayload, r.set_blocked(info.context, str(input.id), True), _contact)

    @strawberry.mutation
    async def unblock_contact(self, info: Info[Context, None], input: ContactIdInput) -> ContactPayload:
        return await mutate(ContactPayload, r.set_blocked(info.context, str(input.id), False), _contact)

    @strawberry.mutation
    async def merge_contacts(self, info: Info[Context, None], input: MergeContactsInput) -> ContactPayload:
        return await mutate(
            ContactPayload, r.merge_contacts(info.context, str(input.primary_id), str(input.secondary_id)), _contact
        )

    @strawberry.mutation
    async def tag_contact(self, info: Info[Context, None], input: TagContactInput) -> ContactPayload:
        return await mutate(ContactPayload, r.tag_contact(info.context, str(input.contact_id), input.tags), _contact)

    @strawberry.mutation
    async def untag_contact(self, info: Info[Context, None], input: TagContactInput) -> ContactPayload:
        return await mutate(
            ContactPayload, r.tag_contact(info.context, str(input.contact_id), input.tags, remove=True), _contact
        )

    @strawberry.mutation
    async def add_contact_note(self, info: Info[Context, None], input: AddContactNoteInput) -> ContactNotePayload:
        return await mutate(
            ContactNotePayload,
            r.add_note(info.context, str(input.contact_id), input.body),
            lambda n: {"note": ContactNote.from_model(n)},
        )

    @strawberry.mutation
    async def delete_contact_note(self, info: Info[Context, None], input: ContactIdInput) -> DeletePayload:
        return await mutate(
            DeletePayload, r.delete_note(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )

    @strawberry.mutation(description="Record a page view or a named event on a contact's timeline.")
    async def track_event(self, info: Info[Context, None], input: TrackEventInput) -> TrackEventPayload:
        work = r.track_event(
            info.context,
            contact_gid=gid(input.contact_id),
            kind=input.kind,
            name=input.name,
            url=input.url,
            title=input.title,
            properties=input.properties,
            occurred_at=input.occurred_at,
        )
        return await mutate(TrackEventPayload, work, lambda e: {"event": ContactEvent.from_model(e, just_written=True)})


@strawberry.type
class ContactSubscription:
    @strawberry.subscription(
        description="Changes to one contact: agents and keys with contacts:read, or the contact itself."
    )
    async def contact_updated(
        self, info: Info[Context, None], id: relay.GlobalID
    ) -> AsyncGenerator[ContactUpdate, None]:
        ctx = info.context
        contact = await r.get_contact(ctx, str(id))
        if contact is None:
            raise PublicError("No contact with this id.", Code.NOT_FOUND)
        channel = keys.contact_channel(contact.workspace_id, contact.id)
        async with listen(ctx, channel) as events:
            async for event in events:
                # The socket's context outlives its data: read related rows afresh.
                ctx.reset_loaders()
                # Authorisation again at send time: the principal may have lost access.
                await still_allowed(
                    ctx, lambda p: r.can_see_contact(p, contact.id), "You can no longer see this contact."
                )
                current = await r.contact_by_id(ctx, contact.id)
                merged = event.get("mergedInto")
                yield ContactUpdate(
                    cursor=event["cursor"],
                    kind=m.ChangeKind(event["kind"]),
                    contact_id=node_id("Contact", contact.id),
                    contact=Contact.from_model(current) if current else None,
                    merged_into_id=node_id("Contact", merged) if merged else None,
                )
