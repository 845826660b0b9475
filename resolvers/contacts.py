"""Contacts: create, update, identify across channels, merge, block, delete with an audit
record; tags, notes, events; attribute definitions."""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from tortoise.expressions import Q, RawSQL
from tortoise.queryset import QuerySet

from core import keys, presence
from core.clock import now
from core.context import Context
from core.db import dialect, json_text
from core.errors import Code, PublicError, UserError, UserFailure, forbidden
from core.events import Outbox, atomic
from core.permissions import Permission, Principal, PrincipalKind
from core.principal_cache import auth_changed
from core.ratelimit import rate_limits
from core.scoping import decode_global_id, encode_global_id
from domain import contact_fields as cf
from domain.masking import mask_card_numbers, mask_card_numbers_in
from models.channels import Channel
from models.contacts import (
    AttributeDefinition,
    AttributeType,
    ChangeKind,
    Contact,
    ContactEvent,
    ContactNote,
    ContactTag,
    DeletedContact,
    EventKind,
    IdentitySource,
    SessionField,
    SmsConsent,
)
from models.conversations import Conversation, ConversationStatus
from models.short_links import ShortLink
from models.workspaces import Agent, MatchingAttribute, Workspace
from resolvers.pagination import Order, Page, paginate
from services import attachments, push, webhooks
from services.contacts import (
    TEXT_FIELDS,
    apply_attributes,
    apply_consent_times,
    delete_contact_rows,
    erase_contact,
    record_change,
    validate_attributes,
    validate_fields,
)
from services.conversations import close_conversation
from services.exports import remove_erased_exports
from services.segments import mark_for_segments

CONTACT_ORDER = Order(("last_seen_at", "id"), descending=True)
NEWEST_FIRST = Order(("id",), descending=True)
EVENT_ORDER = Order(("occurred_at", "id"), descending=True)

MAX_TAGS_PER_CALL = 50
MAX_NOTE = 10_000
MAX_EVENT_PROPERTIES_BYTES = 16_384
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]{0,119}$")


# -- reading ------------------------------------------------------------------------------


MAX_SEARCH = 100
# Attributes of these types hold text; the first MAX_SEARCHABLE searchable ones (in their
# order) are searched too: each is one more LIKE per contact the search scans.
SEARCHABLE_TYPES = (AttributeType.TEXT, AttributeType.LIST, AttributeType.DATE)
MAX_SEARCHABLE = 10


async def search_contacts(query: QuerySet[Contact], workspace_id: int, search: str) -> QuerySet[Contact]:
    """Contacts whose name, e-mail, phone or a searchable attribute contains `search`
    (case-insensitive; its first MAX_SEARCH characters)."""
    term = search.strip()[:MAX_SEARCH]
    condition = Q(name__icontains=term) | Q(email__icontains=term) | Q(phone__contains=term)
    keys = (
        await AttributeDefinition.filter(workspace_id=workspace_id, searchable=True, type__in=SEARCHABLE_TYPES)
        .order_by("position", "id")
        .limit(MAX_SEARCHABLE)
        .values_list("key", flat=True)
    )
    if not keys:
        return query.filter(condition)
    columns = {f"search_{i}": RawSQL(json_text("attributes", key)) for i, key in enumerate(keys)}
    for name in columns:
        condition |= Q(**{f"{name}__icontains": term})
    return query.annotate(**columns).filter(condition)


async def list_contacts(
    ctx: Context,
    *,
    search: str | None,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    segment_gid: str | None = None,
    columns: tuple[str, ...] | None = None,
) -> Page[Contact]:
    """With `columns`, the page holds dicts of those columns rather than Contact objects."""
    ctx.require(Permission.CONTACTS_READ)
    query = ctx.scope.all(Contact)
    if segment_gid is not None:
        from resolvers import segments

        segment = await segments.find_segment(ctx, segment_gid)
        if segment is None:
            raise PublicError("No segment with this id.", Code.NOT_FOUND)
        query = await segments.members_query(ctx, segment)
    if search and search.strip():
        query = await search_contacts(query, ctx.scope.workspace_id, search)
    return await paginate(query, CONTACT_ORDER, first=first, after=after, last=last, before=before, values=columns)


async def contact_by_id(ctx: Context, pk: int | None) -> Contact | None:
    """The contact with this id in the caller's workspace (as it is now), else None: for
    a field of a contact already shown, or an event about one already authorised."""
    return await ctx.scope.get(Contact, pk)


async def get_contact(ctx: Context, gid: str) -> Contact | None:
    """A contact the caller may see: agents and keys with contacts:read, or the contact itself."""
    principal = ctx.require_principal()
    contact = await ctx.scope.by_global_id(gid, "Contact", Contact)
    if contact is None:
        return None
    if can_see_contact(principal, contact.id):
        return contact
    return None


def can_see_contact(principal: Principal, contact_id: int) -> bool:
    if principal.kind is PrincipalKind.CONTACT:
        return principal.contact_id == contact_id
    return principal.can(Permission.CONTACTS_READ)


def contact_refusal(ctx: Context, contact_id: int) -> str | None:
    """Why the caller may not see this contact (or anything of it), None when it may: the
    guard of Contact and ContactEvent (runtime/guards.py), wherever they are reached."""
    viewing = ctx.viewing_contact_id
    if viewing is not None:
        return None if viewing == contact_id else "A contact session sees its own contact only."
    return ctx.lacks(Permission.CONTACTS_READ)


def event_refusal(ctx: Context, contact_id: int, kind: EventKind, just_written: bool) -> str | None:
    """The guard of ContactEvent: a contact session sees its page views, not the named
    events on its timeline (an API key may track those server-side, with properties meant
    for the team), except the one its own trackEvent returns."""
    refusal = contact_refusal(ctx, contact_id)
    if refusal is None and ctx.viewing_contact_id is not None and kind is not EventKind.PAGE_VIEW and not just_written:
        return "A contact session sees its own page views only."
    return refusal


async def load_tags(ctx: Context, contact_id: int) -> list[str]:
    async def batch(ids: list[int]) -> list[list[str]]:
        rows = await ContactTag.filter(contact_id__in=ids).order_by("name").values_list("contact_id", "name")
        by_contact: dict[int, list[str]] = defaultdict(list)
        for cid, name in rows:
            by_contact[cid].append(name)
        return [by_contact.get(i, []) for i in ids]

    return await ctx.loader("contact.tags", batch).load(contact_id)  # type: ignore[no-any-return]


async def load_definitions(ctx: Context) -> list[AttributeDefinition]:
    async def batch(ws_ids: list[int]) -> list[list[AttributeDefinition]]:
        rows = await AttributeDefinition.filter(workspace_id__in=ws_ids).order_by("position", "id")
        by_ws: dict[int, list[AttributeDefinition]] = defaultdict(list)
        for row in rows:
            by_ws[row.workspace_id].append(row)
        return [by_ws.get(i, []) for i in ws_ids]

    loader = ctx.loader("attribute_definitions", batch)
    return await loader.load(ctx.scope.workspace_id)  # type: ignore[no-any-return]


async def load_agent(ctx: Context, agent_id: int | None) -> Agent | None:
    if agent_id is None:
        return None

    async def batch(ids: list[int]) -> list[Agent | None]:
        found = await ctx.scope.get_many(Agent, ids)
        return [found.get(i) for i in ids]

    return await ctx.loader("by_id.Agent", batch).load(agent_id)  # type: ignore[no-any-return]


async def list_notes(ctx: Context, contact: Contact, *, first: int | None, after: str | None) -> Page[ContactNote]:
    ctx.require(Permission.CONTACTS_READ)
    query = ctx.scope.all(ContactNote).filter(contact_id=contact.id)
    return await paginate(query, NEWEST_FIRST, first=first, after=after)


async def list_events(
    ctx: Context, contact: Contact, *, kind: EventKind | None, first: int | None, after: str | None
) -> Page[ContactEvent]:
    principal = ctx.require_principal()
    if not can_see_contact(principal, contact.id):
        raise PublicError("You cannot see this contact's timeline.", Code.FORBIDDEN)
    query = ctx.scope.all(ContactEvent).filter(contact_id=contact.id)
    if principal.kind is PrincipalKind.CONTACT:
        # A session sees its page views only: named events may be tracked server-side by an
        # API key, with properties meant for the team (plan, revenue, scores).
        query = query.filter(kind=EventKind.PAGE_VIEW)
    if kind is not None:
        query = query.filter(kind=kind)
    return await paginate(query, EVENT_ORDER, first=first, after=after)


async def list_deleted(ctx: Context, *, first: int | None, after: str | None) -> Page[DeletedContact]:
    ctx.require(Permission.AUDIT_READ)
    return await paginate(ctx.scope.all(DeletedContact), NEWEST_FIRST, first=first, after=after)


# -- change log and events -----------------------------------------------------------------


# -- writing fields ------------------------------------------------------------------------


async def _resolve_contact_for_write(ctx: Context, gid: str, field: str = "id") -> Contact:
    contact = await ctx.scope.by_global_id(gid, "Contact", Contact)
    if contact is None:
        raise UserFailure.of(field, Code.NOT_FOUND, "No contact with this id.")
    return contact


async def _check_unique_external_id(
    scope_ws: int, external_id: str | None, exclude: int | None, errors: list[UserError]
) -> None:
    """An external id is taken by a contact that holds it, unless an unverified session
    merely claimed it: the trusted writer wins (release_session_claims)."""
    if not external_id:
        return
    clash = Contact.filter(workspace_id=scope_ws, external_id=external_id).exclude(
        identity_source=IdentitySource.SESSION
    )
    if exclude is not None:
        clash = clash.exclude(id=exclude)
    if await clash.exists():
        errors.append(UserError(["externalId"], Code.TAKEN, "Another contact has this externalId."))


async def create_contact(
    ctx: Context, values: dict[str, Any], attributes: list[tuple[str, Any]], tags: list[str]
) -> Contact:
    principal = ctx.require(Permission.CONTACTS_WRITE)
    ws = ctx.scope.workspace_id
    errors: list[UserError] = []
    clean = validate_fields(values, principal, errors)
    attrs = await validate_attributes(ws, attributes, principal, errors)
    cleaned_tags = clean_tags(tags, errors)
    await _check_unique_external_id(ws, clean.get("external_id"), None, errors)
    if not errors:
        await _check_matching_attribute(ws, clean, attrs, errors, principal)
    if errors:
        raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        await release_session_claims(ctx.outbox, ws, [clean["external_id"]] if clean.get("external_id") else [])
        stamp = now()
        contact = Contact(workspace_id=ws, first_seen_at=stamp, last_seen_at=stamp, **clean)
        apply_consent_times(contact, clean, stamp)
        apply_attributes(contact, attrs)
        await contact.save()
        await _add_tags(contact, cleaned_tags)
        await record_change(ctx.outbox, contact, ChangeKind.CREATED)
    return contact


async def update_contact(ctx: Context, gid: str, values: dict[str, Any], attributes: list[tuple[str, Any]]) -> Contact:
    principal = ctx.require(Permission.CONTACTS_WRITE)
    contact = await _resolve_contact_for_write(ctx, gid)
    errors: list[UserError] = []
    clean = validate_fields(values, principal, errors)
    attrs = await validate_attributes(contact.workspace_id, attributes, principal, errors)
    if "external_id" in clean:
        await _check_unique_external_id(contact.workspace_id, clean["external_id"], contact.id, errors)
    if errors:
        raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        if clean.get("external_id"):
            await release_session_claims(ctx.outbox, contact.workspace_id, [clean["external_id"]], keep=contact.id)
        contact = await Contact.select_for_update().get(id=contact.id)
        stamp = now()
        changed_consent = {
            k: v for k, v in clean.items() if k in ("gdpr_consent", "sms_consent") and getattr(contact, k) != v
        }
        for name, value in clean.items():
            setattr(contact, name, value)
        apply_consent_times(contact, changed_consent, stamp)
        apply_attributes(contact, attrs)
        matching_key = await workspace_matching_key(contact.workspace_id) if attrs else None
        if _writes_identity(clean, attrs, matching_key):
            # An agent or API key wrote the identity: it vouches for what it wrote from now
            # on (vouch_for); an anonymous visitor's sessions end (its contact is someone now).
            if contact.identity_source is IdentitySource.SESSION:
                end_contact_sessions(ctx.outbox, contact)
            contact.identity_source = IdentitySource.TRUSTED
            vouch_for(contact, clean, attrs, matching_key)
        await contact.save()
        await webhooks.note_crm_edits(principal, contact, attrs)
        if "vip" in clean:
            await Conversation.filter(contact_id=contact.id).exclude(vip=contact.vip).update(vip=contact.vip)
        await record_change(ctx.outbox, contact, ChangeKind.UPDATED)
    return contact


# -- identity across channels ----------------------------------------------------------------
#
# Who set a contact's identity is models.contacts.IdentitySource. The rules:
# - Only trusted values link: the matching attribute (createContact's TAKEN, a sync row
#   without a known external id, an inbound e-mail or SMS) finds TRUSTED contacts only.
# - A trusted writer (createContact, updateContact, syncContacts) wins an external id that
#   an unverified session claimed: the claim is released (release_session_claims).
# - A session resumes a contact by external id only as _session_contact says.

# Built-in fields that identify a contact: a session never writes them on a trusted one.
TRUSTED_IDENTITY_FIELDS = frozenset({"external_id", "email", "phone"})
# Which built-in values a session may supply: their SessionField bit. A session-supplied
# value never links, even once the contact is TRUSTED: a trusted writer that names the
# contact (by external id, say) vouches for the values it writes, not for what the
# session typed (vouch_for).
SESSION_FIELD_BITS = {"email": SessionField.EMAIL, "phone": SessionField.PHONE}


def vouch_for(contact: Contact, clean: dict[str, Any], attributes: dict[str, Any], matching_key: str | None) -> bool:
    """A trusted writer wrote these values: the ones a session had supplied are its own
    now (their SessionField bits clear). Whether session_fields changed."""
    bits = contact.session_fields
    for field_name, bit in SESSION_FIELD_BITS.items():
        if field_name in clean:
            bits &= ~bit
    if matching_key is not None and matching_key in attributes:
        bits &= ~SessionField.MATCHING
    changed = bits != contact.session_fields
    contact.session_fields = bits
    return changed


def session_bit(column: str) -> int:
    """The SessionField bit of a matching column: email, phone, the custom matching
    attribute's expression; none for the external id (a session's claim of one is the
    identity_source, and gives way: release_session_claims)."""
    if column == "external_id":
        return 0
    return int(SESSION_FIELD_BITS.get(column, SessionField.MATCHING))


def trusted_value(column: str) -> str:
    """SQL: the contact's `column` value (see session_bit) was set by a trusted writer."""
    return f"identity_source = 'trusted' AND (session_fields & {session_bit(column)}) = 0"


async def workspace_matching_key(workspace_id: int) -> str | None:
    key = await Workspace.filter(id=workspace_id, matching_attribute=MatchingAttribute.CUSTOM).values_list(
        "matching_attribute_key", flat=True
    )
    return key[0] if key else None


def _writes_identity(clean: dict[str, Any], attributes: dict[str, Any], matching_key: str | None) -> bool:
    return bool(clean.keys() & TRUSTED_IDENTITY_FIELDS) or (matching_key is not None and matching_key in attributes)


def end_contact_sessions(outbox: Outbox, contact: Contact) -> None:
    """Every session token of the contact stops working, with its open sockets (core/
    socket_guard.py), once the caller saves the contact in its transaction: its session
    version goes up."""
    contact.session_version += 1
    auth_changed(outbox, contact_id=contact.id)


async def release_session_claims(
    outbox: Outbox, workspace_id: int, external_ids: list[str], *, keep: int | None = None
) -> None:
    """A trusted writer is about to set these external ids: contacts whose unverified
    session claimed one of them lose it (and keep the rest of what they are), so the real
    user's data never lands in the claimant's contact."""
    if not external_ids:
        return
    claims = Contact.filter(
        workspace_id=workspace_id, external_id__in=external_ids, identity_source=IdentitySource.SESSION
    )
    if keep is not None:
        claims = claims.exclude(id=keep)
    claimants = await claims.select_for_update()
    if not claimants:
        return
    await Contact.filter(id__in=[c.id for c in claimants]).update(external_id=None, updated_at=now())
    for contact in claimants:
        contact.external_id = None
        await record_change(outbox, contact, ChangeKind.UPDATED)


def contact_named(principal: Principal, contact_id: int) -> str:
    """How an error names another contact: by id to a caller that may read contacts; to a
    write-only key only as "Another contact" (that the value exists is what a uniqueness
    check tells anyway)."""
    return (
        f"Contact {encode_global_id('Contact', contact_id)}"
        if principal.can(Permission.CONTACTS_READ)
        else "Another contact"
    )


async def _check_matching_attribute(
    workspace_id: int, values: dict[str, Any], attributes: dict[str, Any], errors: list[UserError], principal: Principal
) -> None:
    """One contact per value of the workspace's matching attribute: a second contact with
    the same e-mail (or phone, or key) would split one person's history in two."""
    workspace = await Workspace.get(id=workspace_id)
    existing = await find_matching_contact(workspace, values, attributes)
    if existing is None:
        return
    kind = workspace.matching_attribute
    path = ["attributes"] if kind is MatchingAttribute.CUSTOM else [cf.camel(kind.value)]
    errors.append(
        UserError(
            path,
            Code.TAKEN,
            f"{contact_named(principal, existing.id)} already has this {kind.value.replace('_', ' ')}, "
            "the workspace's matching attribute: update or merge it instead.",
        )
    )


async def find_matching_contact(
    workspace: Workspace, values: dict[str, Any], attributes: dict[str, Any]
) -> Contact | None:
    """The trusted contact that has the workspace's matching attribute value, if any: a
    value a session reported links nothing."""
    kind = workspace.matching_attribute
    if kind is MatchingAttribute.CUSTOM:
        key = workspace.matching_attribute_key
        value = attributes.get(key) if key else None
        if value is None:
            return None
        return await _find_by_attribute(workspace.id, key, value)  # type: ignore[arg-type]
    value = values.get(kind.value)
    if not value:
        return None
    query = Contact.filter(workspace_id=workspace.id, identity_source=IdentitySource.TRUSTED, **{kind.value: value})
    return await trusted_only(query, kind.value).order_by("id").first()


def trusted_only(query: QuerySet[Contact], column: str) -> QuerySet[Contact]:
    """Contacts whose `column` (email, phone, external_id) a trusted writer set, not a session."""
    bit = session_bit(column)
    if not bit:
        return query
    return query.annotate(session_bit=RawSQL(f"session_fields & {bit}")).filter(session_bit=0)


async def _find_by_attribute(workspace_id: int, key: str, value: Any) -> Contact | None:
    # Tortoise's JSON lookups do not work on SQLite: emit each dialect's JSON expression.
    if dialect() == "postgres":
        sql = (
            f"SELECT id FROM contacts WHERE workspace_id = $1 AND {trusted_value('attributes')} "  # noqa: S608
            "AND attributes->>$2 = $3 ORDER BY id LIMIT 1"
        )
    else:
        sql = (
            f"SELECT id FROM contacts WHERE workspace_id = ? AND {trusted_value('attributes')} "  # noqa: S608
            "AND json_extract(attributes, '$.' || ?) = ? ORDER BY id LIMIT 1"
        )
    from tortoise import connections

    rows = await connections.get("default").execute_query_dict(
        sql, [workspace_id, key, str(value) if dialect() == "postgres" else value]
    )
    return await Contact.get(id=rows[0]["id"]) if rows else None


async def workspace_verifies(workspace_id: int) -> bool:
    """Whether any channel of the workspace verifies identities."""
    return await Channel.filter(workspace_id=workspace_id, identity_verification=True).exists()


async def _session_contact(
    outbox: Outbox, workspace_id: int, previous: Contact | None, external_id: str | None, verified: bool
) -> tuple[Contact | None, str | None]:
    """The existing contact a session resumes (with `external_id` set on it when it takes
    one), or None and the external id a new contact carries. `verified`: the session
    proved `external_id` with a userHash.

    - No external id: the visitor's own anonymous contact (its session token), else new.
    - A proven external id: its contact, unless only an unverified session claimed it (the
      claim is released, unless the claimant is this visitor's own contact); else the
      visitor's anonymous contact logs in and keeps its history.
    - An unproven external id, in a workspace where any channel verifies: not attached; the
      visitor gets its own anonymous contact. Elsewhere: a contact that a session claimed
      the id for is resumed; one a trusted writer or a verified session set is not (the
      visitor gets its own anonymous contact); an id nobody has is claimed, untrusted.
    """
    anonymous = previous if previous is not None and previous.external_id is None else None
    if external_id is None:
        return anonymous, None
    own = anonymous if anonymous is not None and anonymous.identity_source is IdentitySource.SESSION else None
    if not verified and await workspace_verifies(workspace_id):
        return own, None
    holder = await Contact.get_or_none(workspace_id=workspace_id, external_id=external_id)
    if holder is not None:
        if verified and holder.identity_source is IdentitySource.SESSION:
            if previous is not None and previous.id == holder.id:
                holder.identity_source = IdentitySource.VERIFIED_SESSION  # its own claim, now proven
                return holder, None
            await release_session_claims(outbox, workspace_id, [external_id])
        elif verified or holder.identity_source is IdentitySource.SESSION:
            return holder, None
        else:
            return own, None
    if anonymous is not None and (verified or own is not None):
        anonymous.external_id = external_id
        if verified:
            anonymous.identity_source = IdentitySource.VERIFIED_SESSION
        return anonymous, None
    return None, external_id


async def identify_contact(
    outbox: Outbox,
    *,
    workspace_id: int,
    channel: Channel,
    previous: Contact | None,
    external_id: str | None,
    verified: bool,
    email: str | None,
    name: str | None,
    device: dict[str, Any],
    platform_attributes: dict[str, Any],
) -> Contact:
    """Find or create the contact behind a widget/SDK session (see start_contact_session
    and _session_contact)."""
    errors: list[UserError] = []
    clean = validate_fields({k: v for k, v in {"email": email, "name": name}.items() if v is not None}, None, errors)
    device_clean = validate_fields({k: v for k, v in device.items() if v is not None}, None, errors)
    attrs = await validate_attributes(workspace_id, list(platform_attributes.items()), None, errors)
    if errors:
        raise UserFailure(*errors)
    # The e-mail, phone or platform values a widget or SDK reports are not verified
    # (identity verification signs the external id alone), so they never join the session
    # to an existing contact: that would let anyone who types an address read that
    # person's conversations.
    contact, claim = await _session_contact(outbox, workspace_id, previous, external_id, verified)
    stamp = now()
    created = contact is None
    if contact is None:
        contact = Contact(
            workspace_id=workspace_id,
            external_id=claim,
            identity_source=IdentitySource.VERIFIED_SESSION if verified else IdentitySource.SESSION,
            platform=channel.kind.value,
            first_seen_at=stamp,
            last_seen_at=stamp,
        )
    # The device and its platform attributes describe this session: the latest wins.
    for field_name, value in device_clean.items():
        setattr(contact, field_name, value)
    apply_attributes(contact, attrs)
    if attrs and await workspace_matching_key(workspace_id) in attrs:
        contact.session_fields |= SessionField.MATCHING  # a session's value links nothing
    contact.last_seen_at = stamp
    fill_from_session(contact, clean)
    await contact.save()
    await record_change(outbox, contact, ChangeKind.CREATED if created else ChangeKind.UPDATED)
    return contact


def fill_from_session(contact: Contact, values: dict[str, Any]) -> set[str]:
    """What a contact session says about itself (its e-mail and name at startContactSession
    or answerProactiveMessage): it fills empty fields only, and never the identity of a
    trusted contact (TRUSTED_IDENTITY_FIELDS). Returns the fields set; the caller saves
    and records the change (record_change), as every contact write does."""
    filled: set[str] = set()
    for field_name, value in values.items():
        if value is None or getattr(contact, field_name):
            continue
        if contact.identity_source is IdentitySource.TRUSTED and field_name in TRUSTED_IDENTITY_FIELDS:
            continue
        setattr(contact, field_name, value)
        filled.add(field_name)
        if field_name in SESSION_FIELD_BITS:
            contact.session_fields |= SESSION_FIELD_BITS[field_name]
            filled.add("session_fields")
    return filled


# -- tags ------------------------------------------------------------------------------------


def clean_tags(tags: list[str], errors: list[UserError], *, limit: int = MAX_TAGS_PER_CALL) -> list[str]:
    """Tags as stored: white space folded, lower case, card numbers masked, no duplicates;
    problems go to `errors`."""
    if len(tags) > limit:
        errors.append(UserError(["tags"], Code.TOO_LONG, f"At most {limit} tags at a time."))
        return []
    clean: list[str] = []
    for i, tag in enumerate(tags):
        name = mask_card_numbers(" ".join(tag.split()).lower())
        if not name or len(name) > 64:
            errors.append(UserError(["tags", str(i)], Code.INVALID, "A tag has 1 to 64 characters."))
        elif name not in clean:
            clean.append(name)
    return clean


async def _add_tags(contact: Contact, names: list[str]) -> None:
    if not names:
        return
    existing = set(await ContactTag.filter(contact_id=contact.id).values_list("name", flat=True))
    fresh = [
        ContactTag(workspace_id=contact.workspace_id, contact_id=contact.id, name=n) for n in names if n not in existing
    ]
    if fresh:
        await ContactTag.bulk_create(fresh)


async def tag_contact(ctx: Context, gid: str, tags: list[str], *, remove: bool = False) -> Contact:
    ctx.require(Permission.CONTACTS_WRITE)
    contact = await _resolve_contact_for_write(ctx, gid, "contactId")
    errors: list[UserError] = []
    names = clean_tags(tags, errors)
    if errors:
        raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        if remove:
            await ContactTag.filter(contact_id=contact.id, name__in=names).delete()
        else:
            await _add_tags(contact, names)
        await Contact.filter(id=contact.id).update(updated_at=now())
        await record_change(ctx.outbox, contact, ChangeKind.UPDATED)
    return contact


# -- notes -----------------------------------------------------------------------------------


async def add_note(ctx: Context, gid: str, body: str) -> ContactNote:
    principal = ctx.require(Permission.CONTACTS_WRITE)
    if principal.kind is not PrincipalKind.AGENT:
        raise UserFailure.of(None, Code.FORBIDDEN, "Notes are written by agents.")
    contact = await _resolve_contact_for_write(ctx, gid, "contactId")
    text = body.strip()
    if not text:
        raise UserFailure.of("body", Code.REQUIRED, "A note needs some text.")
    if len(text) > MAX_NOTE:
        raise UserFailure.of("body", Code.TOO_LONG, f"A note has at most {MAX_NOTE} characters.")
    return await ContactNote.create(
        workspace_id=contact.workspace_id,
        contact_id=contact.id,
        author_id=principal.agent_id,
        body=mask_card_numbers(text),
    )


async def delete_note(ctx: Context, gid: str) -> str:
    principal = ctx.require(Permission.CONTACTS_WRITE)
    note = await ctx.scope.by_global_id(gid, "ContactNote", ContactNote)
    if note is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No note with this id.")
    is_author = principal.agent_id is not None and note.author_id == principal.agent_id
    if not is_author and not principal.is_admin:
        raise UserFailure.of("id", Code.FORBIDDEN, "Only the note's author or an admin can delete it.")
    await note.delete()
    return gid


# -- events ----------------------------------------------------------------------------------


async def track_event(
    ctx: Context,
    *,
    contact_gid: str | None,
    kind: EventKind,
    name: str | None,
    url: str | None,
    title: str | None,
    properties: Any,
    occurred_at: datetime | None,
) -> ContactEvent:
    principal = ctx.require_principal()
    if principal.kind is PrincipalKind.CONTACT:
        await rate_limits.hit_widget("widget-events", str(principal.channel_id), ctx.client_ip)
        if contact_gid is not None:
            decoded = decode_global_id(contact_gid)
            if decoded != ("Contact", principal.contact_id):
                raise UserFailure.of("contactId", Code.FORBIDDEN, "A contact session tracks its own events only.")
        contact = await ctx.scope.get(Contact, principal.contact_id)
    else:
        ctx.require(Permission.EVENTS_WRITE)
        if contact_gid is None:
            raise UserFailure.of("contactId", Code.REQUIRED, "Name the contact the event belongs to.")
        contact = await ctx.scope.by_global_id(contact_gid, "Contact", Contact)
    if contact is None:
        raise UserFailure.of("contactId", Code.NOT_FOUND, "No contact with this id.")

    errors: list[UserError] = []
    if kind is EventKind.PAGE_VIEW:
        name = name or "page_view"
        if not url:
            errors.append(UserError(["url"], Code.REQUIRED, "A page view needs the page URL."))
    if not name or not EVENT_NAME.match(name):
        errors.append(
            UserError(["name"], Code.INVALID, "An event name has 1 to 120 letters, digits, spaces or _ . : / -.")
        )
    if url is not None and (len(url) > 2048 or not url.startswith(("http://", "https://"))):
        errors.append(UserError(["url"], Code.INVALID, "url must be an http(s) URL of at most 2048 characters."))
    if title is not None and len(title) > 500:
        errors.append(UserError(["title"], Code.TOO_LONG, "title has at most 500 characters."))
    props = properties if properties is not None else {}
    if not isinstance(props, dict):
        errors.append(UserError(["properties"], Code.INVALID, "properties must be a JSON object."))
    elif len(json.dumps(props)) > MAX_EVENT_PROPERTIES_BYTES:
        errors.append(
            UserError(
                ["properties"], Code.TOO_LONG, f"properties take at most {MAX_EVENT_PROPERTIES_BYTES} bytes of JSON."
            )
        )
    stamp = now()
    when = occurred_at or stamp
    if when.tzinfo is None:
        errors.append(UserError(["occurredAt"], Code.INVALID, "occurredAt needs a time zone offset."))
    elif when > stamp + timedelta(minutes=5):
        errors.append(UserError(["occurredAt"], Code.INVALID, "occurredAt is in the future."))
    if errors:
        raise UserFailure(*errors)
    async with atomic(ctx.outbox):
        event = await ContactEvent.create(
            workspace_id=contact.workspace_id,
            contact_id=contact.id,
            kind=kind,
            name=mask_card_numbers(name),
            url=url and mask_card_numbers(url),
            title=title and mask_card_numbers(title),
            properties=mask_card_numbers_in(props),
            occurred_at=when,
        )
        await Contact.filter(id=contact.id, last_seen_at__lt=when).update(last_seen_at=when)
        mark_for_segments(ctx.outbox, contact.workspace_id, contact.id)
    return event


# -- block, delete, merge --------------------------------------------------------------------


async def set_blocked(ctx: Context, gid: str, blocked: bool) -> Contact:
    ctx.require(Permission.CONTACTS_WRITE)
    contact = await _resolve_contact_for_write(ctx, gid)
    async with atomic(ctx.outbox):
        contact.blocked = blocked
        await contact.save(update_fields=["blocked", "updated_at"])
        if blocked:
            await _close_conversations(ctx, contact)
        await record_change(ctx.outbox, contact, ChangeKind.UPDATED)
    return contact


async def _close_conversations(ctx: Context, contact: Contact) -> None:
    """Blocking resolves the contact's open and snoozed conversations."""
    open_ones = await Conversation.filter(contact_id=contact.id).exclude(status=ConversationStatus.RESOLVED)
    for conversation in open_ones:
        await close_conversation(
            ctx.outbox, conversation, ctx.principal.agent_id if ctx.principal else None, reason="contact_blocked"
        )


async def delete_contact(ctx: Context, gid: str) -> DeletedContact:
    """Erase a contact: its rows, the webhook deliveries about it (in one transaction),
    then its attachments' files, the export files that may hold it, its presence and the
    CRM's answers in Redis. The audit record
    keeps masked hints and counts what was removed. A process dying after the commit
    leaves export files whose links already answer 410, removed by the next
    `prune_exports`, and presence entries that expire within a minute."""
    principal = ctx.require(Permission.CONTACTS_DELETE)
    contact = await _resolve_contact_for_write(ctx, gid)
    who = await ctx.scope.get(Agent, principal.agent_id) if principal.agent_id else None
    async with atomic(ctx.outbox):
        record = await erase_contact(
            ctx.outbox,
            contact,
            deleted_by_id=who.id if who else None,
            deleted_by_name=who.name if who else f"API key {principal.api_key_id}",
        )
    erased = dict(record.erased or {})
    # After the commit: the deletion is recorded, so the files' links already answer 410.
    erased["exportFiles"] = await remove_erased_exports(contact.workspace_id, record.deleted_at)
    if ctx.hub is not None:
        # Redis away: the entries expire within presence.TTL anyway.
        with contextlib.suppress(RedisError):
            erased["presence"] = await presence.forget(ctx.hub.redis, contact.workspace_id, "contact", contact.id)
            # The CRM's cached answers about the contact (jobs/crm.py); they expire anyway.
            channel_ids = await Channel.filter(workspace_id=contact.workspace_id).values_list("id", flat=True)
            if channel_ids:
                await ctx.hub.redis.delete(*(keys.crm_answer(c, contact.id) for c in channel_ids))
    record.erased = erased
    await DeletedContact.filter(id=record.id).update(erased=erased)
    return record


async def merge_contacts(ctx: Context, primary_gid: str, secondary_gid: str) -> Contact:
    """Fold the secondary contact into the primary: its events, notes and tags move, the
    primary's values win where both have one, and the secondary is removed.

    The primary takes the secondary's identity (external id, e-mail, phone), so merging
    needs contacts:identity, and contacts:crm when CRM-managed values move. A primary that
    no trusted writer had identified (a widget visitor) loses its sessions: whoever holds
    its token proved nothing about the secondary."""
    principal = ctx.require(Permission.CONTACTS_WRITE)
    if not principal.can(Permission.CONTACTS_IDENTITY):
        raise forbidden("Merging contacts moves their identity: it needs the contacts:identity permission.")
    primary = await _resolve_contact_for_write(ctx, primary_gid, "primaryId")
    secondary = await _resolve_contact_for_write(ctx, secondary_gid, "secondaryId")
    if primary.id == secondary.id:
        raise UserFailure.of("secondaryId", Code.INVALID, "A contact cannot be merged into itself.")
    moving = [k for k in (secondary.attributes or {}) if k not in (primary.attributes or {})]
    if (
        moving
        and not principal.can(Permission.CONTACTS_CRM)
        and await AttributeDefinition.filter(
            workspace_id=primary.workspace_id, key__in=moving, crm_managed=True
        ).exists()
    ):
        raise forbidden("The secondary contact has CRM-managed values: merging needs the contacts:crm permission.")
    matching_key = await workspace_matching_key(primary.workspace_id)
    session_fields = _merged_session_fields(primary, secondary, matching_key)
    async with atomic(ctx.outbox):
        for model in (ContactEvent, ContactNote, ShortLink):
            await model.filter(contact_id=secondary.id).update(contact_id=primary.id)
        await Conversation.filter(contact_id=secondary.id).update(
            contact_id=primary.id, vip=primary.vip or secondary.vip
        )
        await webhooks.move_deliveries(secondary.id, primary.id)  # so erasing the primary erases them too
        await push.move_devices(secondary.id, primary.id)  # the same person's phones
        await attachments.move(secondary.id, primary.id)
        secondary_tags = await ContactTag.filter(contact_id=secondary.id).values_list("name", flat=True)
        await _add_tags(primary, list(secondary_tags))
        for field_name in (*TEXT_FIELDS, "platform"):
            if getattr(primary, field_name) in (None, "") and getattr(secondary, field_name) not in (None, ""):
                setattr(primary, field_name, getattr(secondary, field_name))
        primary.attributes = {**(secondary.attributes or {}), **(primary.attributes or {})}
        primary.vip = primary.vip or secondary.vip
        if primary.identity_source is not IdentitySource.TRUSTED:
            end_contact_sessions(ctx.outbox, primary)
        primary.session_fields = session_fields
        if IdentitySource.TRUSTED in (primary.identity_source, secondary.identity_source):
            primary.identity_source = IdentitySource.TRUSTED  # an agent or API key merged them
        elif (
            IdentitySource.VERIFIED_SESSION in (primary.identity_source, secondary.identity_source)
            and primary.external_id
        ):
            primary.identity_source = IdentitySource.VERIFIED_SESSION
        primary.blocked = primary.blocked or secondary.blocked
        if not primary.gdpr_consent and secondary.gdpr_consent:
            primary.gdpr_consent, primary.gdpr_consent_at = True, secondary.gdpr_consent_at
        if primary.sms_consent is SmsConsent.NEVER:
            primary.sms_consent, primary.sms_consent_at = secondary.sms_consent, secondary.sms_consent_at
        primary.first_seen_at = (
            min(d for d in (primary.first_seen_at, secondary.first_seen_at) if d)
            if (primary.first_seen_at or secondary.first_seen_at)
            else None
        )
        primary.last_seen_at = max(primary.last_seen_at, secondary.last_seen_at)
        # The secondary goes first: the primary may take over its unique external id.
        await delete_contact_rows(secondary.id)
        auth_changed(ctx.outbox, contact_id=secondary.id)
        await primary.save()
        await record_change(ctx.outbox, secondary, ChangeKind.DELETED, mergedInto=primary.id)
        await record_change(ctx.outbox, primary, ChangeKind.UPDATED)
    return primary


def _merged_session_fields(primary: Contact, secondary: Contact, matching_key: str | None) -> int:
    """The merged contact's SessionField bits: each value keeps the trust it had on the
    contact it comes from (a value of a contact no trusted writer identified is a
    session's)."""
    bits = 0
    values = [(bit, primary if getattr(primary, name) else secondary) for name, bit in SESSION_FIELD_BITS.items()]
    if matching_key is not None:
        values.append((SessionField.MATCHING, primary if matching_key in (primary.attributes or {}) else secondary))
    for bit, source in values:
        if source.identity_source is not IdentitySource.TRUSTED or source.session_fields & bit:
            bits |= bit
    return bits
