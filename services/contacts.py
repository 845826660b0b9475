"""A contact's values as createContact, updateContact and syncContacts write them: built-in
fields normalised, custom attribute values checked against their definitions (with the
principal's rights), then applied to the row; the change log every write appends to (one
contact or a batch); and erasure as deleteContact and a bulk DELETE both do it. The
contacts, sync and bulk code all call these; each error names its field (`UserError` paths
in camelCase)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from tortoise.expressions import Subquery

from core import keys
from core.bulk import insert_returning
from core.clock import now
from core.errors import Code, UserError
from core.events import Outbox
from core.permissions import Permission, Principal
from core.principal_cache import auth_changed
from core.storage import storage
from domain import contact_fields as cf
from domain.masking import mask_email, mask_name, mask_phone
from models.contacts import (
    AttributeDefinition,
    AttributeSource,
    ChangeKind,
    Contact,
    ContactChange,
    ContactEvent,
    ContactNote,
    ContactTag,
    DeletedContact,
    SmsConsent,
)
from models.conversations import Conversation, ConversationActivity, ConversationNote, InboxEvent, Message
from models.search import SearchDocument
from models.short_links import ShortLink
from services import attachments, push, webhooks
from services.search import purge_deleted_text
from services.segments import mark_for_segments, schedule_dirty_refresh

MAX_ATTRIBUTES_PER_CALL = 100

# Built-in fields: (normaliser, max length or None). Values arrive already typed by GraphQL.
TEXT_FIELDS: dict[str, Callable[[str], str]] = {
    "name": lambda v: cf.normalize_free_text(v, 200),
    "email": cf.normalize_email,
    "phone": cf.normalize_phone,
    "external_id": lambda v: cf.normalize_text(v, 128),
    "country": cf.normalize_country,
    "city": lambda v: cf.normalize_free_text(v, 120),
    "time_zone": cf.normalize_time_zone,
    "locale": cf.normalize_locale,
    "browser_language": cf.normalize_locale,
    "os": lambda v: cf.normalize_free_text(v, 64),
    "browser": lambda v: cf.normalize_free_text(v, 64),
    "ip": cf.normalize_ip,
    "referrer": lambda v: cf.normalize_free_text(v, 2048),
}
IDENTITY_FIELDS = {"name", "email"}
BUILT_IN_FIELDS = set(TEXT_FIELDS) | {"vip", "gdpr_consent", "sms_consent", "tags", "blocked"}


def validate_fields(values: dict[str, Any], principal: Principal | None, errors: list[UserError]) -> dict[str, Any]:
    """Normalised built-in field values; errors appended with the field's camelCase path."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        path = [cf.camel(name)]
        if name in IDENTITY_FIELDS and principal is not None and not principal.can(Permission.CONTACTS_IDENTITY):
            errors.append(
                UserError(path, Code.FORBIDDEN, f"Editing a contact's {name} needs the contacts:identity permission.")
            )
            continue
        if name in TEXT_FIELDS:
            if value is None or (isinstance(value, str) and not value.strip()):
                clean[name] = None
                continue
            try:
                clean[name] = TEXT_FIELDS[name](value)
            except ValueError as exc:
                errors.append(UserError(path, Code.INVALID, f"{cf.camel(name)}: {exc}."))
        elif name in ("vip", "gdpr_consent"):
            if value is None:
                errors.append(UserError(path, Code.INVALID, f"{cf.camel(name)} cannot be null."))
            else:
                clean[name] = bool(value)
        elif name == "sms_consent":
            if value is None:
                errors.append(UserError(path, Code.INVALID, "smsConsent cannot be null."))
            else:
                clean[name] = SmsConsent(value)
        else:
            errors.append(UserError(path, Code.INVALID, f"{cf.camel(name)} cannot be set here."))
    return clean


async def validate_attributes(
    ctx_workspace: int,
    items: list[tuple[str, Any]],
    principal: Principal | None,
    errors: list[UserError],
    definitions: dict[str, AttributeDefinition] | None = None,
) -> dict[str, Any]:
    """Custom attribute values checked against their definitions.

    `principal` None means the system itself (platform metadata), which alone writes
    platform attributes. `definitions` (by key), when the caller has them, spare the read:
    a bulk sync validates a thousand rows against one read."""
    if len(items) > MAX_ATTRIBUTES_PER_CALL:
        errors.append(
            UserError(["attributes"], Code.INVALID, f"At most {MAX_ATTRIBUTES_PER_CALL} attributes per call.")
        )
        return {}
    if definitions is None:
        keys_wanted = {k for k, _ in items}
        definitions = {
            d.key: d for d in await AttributeDefinition.filter(workspace_id=ctx_workspace, key__in=list(keys_wanted))
        }
    clean: dict[str, Any] = {}
    for i, (key, value) in enumerate(items):
        path = ["attributes", str(i), "value"]
        definition = definitions.get(key)
        if definition is None:
            errors.append(
                UserError(["attributes", str(i), "key"], Code.NOT_FOUND, f"No attribute is defined with key {key!r}.")
            )
            continue
        if principal is None and definition.source is not AttributeSource.PLATFORM:
            # The widget or SDK (no principal) sets platform attributes only: its user must
            # not write custom or CRM-managed values on themselves.
            errors.append(UserError(["platformAttributes", key], Code.FORBIDDEN, f"{key} is not a platform attribute."))
            continue
        if principal is not None and definition.source is AttributeSource.PLATFORM:
            errors.append(UserError(path, Code.READ_ONLY, f"{key} is a platform attribute: only the channel sets it."))
            continue
        if principal is not None and definition.crm_managed and not principal.can(Permission.CONTACTS_CRM):
            errors.append(
                UserError(
                    path, Code.FORBIDDEN, f"{key} is managed by the CRM: this workspace does not let agents edit it."
                )
            )
            continue
        try:
            clean[key] = cf.coerce_attribute(definition.type.value, definition.options, value)
        except ValueError as exc:
            errors.append(UserError(path, Code.INVALID, f"{key}: {exc}."))
    return clean


def apply_attributes(contact: Contact, values: dict[str, Any]) -> None:
    merged = dict(contact.attributes or {})
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    contact.attributes = merged


def apply_consent_times(contact: Contact, clean: dict[str, Any], stamp: datetime) -> None:
    if "gdpr_consent" in clean:
        contact.gdpr_consent_at = stamp if clean["gdpr_consent"] else None
    if "sms_consent" in clean:
        contact.sms_consent_at = stamp


# -- the change log ------------------------------------------------------------------------


async def record_change(outbox: Outbox, contact: Contact, kind: ChangeKind, **extra: Any) -> None:
    """Append to the change log, queue the `contactUpdated` event for after commit, and
    mark the contact for segment re-evaluation."""
    change = await ContactChange.create(workspace_id=contact.workspace_id, contact_id=contact.id, kind=kind)
    await webhooks.contact_changed(outbox, contact, kind, change.id, **extra)
    outbox.add(
        keys.contact_channel(contact.workspace_id, contact.id),
        {"type": "contact", "kind": kind.value, "contactId": contact.id, "cursor": str(change.id), **extra},
    )
    mark_for_segments(outbox, contact.workspace_id, contact.id)


async def record_changes(
    outbox: Outbox, workspace_id: int, written: Sequence[tuple[Contact | int, ChangeKind]]
) -> None:
    """What record_change does for one contact, for a whole batch: change-log rows,
    contactUpdated events, webhook events, one segment re-evaluation. A contact given by
    id is read only when some endpoint takes its webhook event."""
    if not written:
        return
    ids = [c if isinstance(c, int) else c.id for c, _ in written]
    rows = await insert_returning(
        ContactChange,
        [
            ContactChange(workspace_id=workspace_id, contact_id=i, kind=k)
            for i, (_, k) in zip(ids, written, strict=True)
        ],
        ["id", "contact_id"],
    )
    cursors = {int(r["contact_id"]): int(r["id"]) for r in rows}
    for contact_id, (_, kind) in zip(ids, written, strict=True):
        outbox.add(
            keys.contact_channel(workspace_id, contact_id),
            {"type": "contact", "kind": kind.value, "contactId": contact_id, "cursor": str(cursors[contact_id])},
        )
    subscribed = await webhooks.subscribed_types(workspace_id)
    wanted = {webhooks.change_type(k).value for _, k in written} & subscribed
    if wanted:
        unread = [c for c, _ in written if isinstance(c, int)]
        read = {c.id: c for c in await Contact.filter(id__in=unread)} if unread else {}
        events = (
            webhooks.contact_event(c if isinstance(c, Contact) else read[c], k, cursors[i])
            for i, (c, k) in zip(ids, written, strict=True)
            if isinstance(c, Contact) or c in read
        )
        await webhooks.emit(outbox, workspace_id, (e for e in events if e[0].value in wanted))

    async def mark() -> None:
        await schedule_dirty_refresh(outbox.hub, outbox.jobs, workspace_id, ids)

    outbox.after_commit(mark)


# -- erasure -------------------------------------------------------------------------------


async def erase_contact(
    outbox: Outbox, contact: Contact, *, deleted_by_id: int | None, deleted_by_name: str, purge: bool = True
) -> DeletedContact:
    """Erase a contact in the caller's transaction: its rows, its devices, the webhook
    deliveries about it; the audit record keeps masked hints and counts what was removed.
    After the commit the caller removes the export files that may hold it
    (`remove_erased_exports`) and its presence entries. A caller erasing many contacts
    passes `purge=False` and calls `purge_deleted_text()` once after the last."""
    record = await DeletedContact.create(
        workspace_id=contact.workspace_id,
        name_hint=mask_name(contact.name),
        email_hint=mask_email(contact.email),
        phone_hint=mask_phone(contact.phone),
        platform=contact.platform,
        deleted_by_id=deleted_by_id,
        deleted_by_name=deleted_by_name,
    )
    devices = await push.erase_devices(contact.id)  # before the contact row, which they hang on
    files = await attachments.erase_rows(contact.id)  # before the messages, which they hang on
    erased = await delete_contact_rows(contact.id)
    if purge:
        await purge_deleted_text()
    erased["webhookDeliveries"] = await webhooks.erase_deliveries(contact.id)
    erased["pushDevices"] = devices
    erased["attachments"] = len(files)
    if files:
        # The files go once the deletion is committed: their rows are gone, nothing links them.
        outbox.after_commit(lambda: _delete_files(files))
    auth_changed(outbox, contact_id=contact.id)  # its session tokens stop working
    await record_change(outbox, contact, ChangeKind.DELETED)
    # Stamped last, as close to the commit as it gets (see ERASURE_MARGIN, services/exports.py).
    record.erased, record.deleted_at = erased, now()
    await record.save(update_fields=["erased", "deleted_at"])
    return record


async def _delete_files(keys: list[str]) -> None:
    await storage().delete(keys)


async def delete_contact_rows(contact_id: int) -> dict[str, int]:
    """Delete a contact and everything hanging on it; how many rows of each kind."""
    # Explicit, child tables first: correct whether or not the database enforces cascades.
    conversations = Subquery(Conversation.filter(contact_id=contact_id).values("id"))
    # The search index first: its triggers then have nothing left to do, and SQLite's
    # counts below are the rows themselves (Tortoise counts the changes triggers make).
    await SearchDocument.filter(conversation_id__in=conversations).delete()
    await ShortLink.filter(contact_id=contact_id).delete()
    counts = {"messages": await Message.filter(conversation_id__in=conversations).delete()}
    await ConversationActivity.filter(conversation_id__in=conversations).delete()
    # The inbox feed's log and agents' notes hang on the conversations too: deleted here, so
    # the count below is the conversations alone (SQLite counts cascaded rows with them).
    await InboxEvent.filter(conversation_id__in=conversations).delete()
    counts["conversationNotes"] = await ConversationNote.filter(conversation_id__in=conversations).delete()
    counts["conversations"] = await Conversation.filter(contact_id=contact_id).delete()
    for kind, model in (("events", ContactEvent), ("notes", ContactNote), ("tags", ContactTag)):
        counts[kind] = await model.filter(contact_id=contact_id).delete()
    await Contact.filter(id=contact_id).delete()
    return counts
