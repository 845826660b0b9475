"""A contact's values as createContact, updateContact and syncContacts write them: built-in
fields normalised, custom attribute values checked against their definitions (with the
principal's rights), then applied to the row. The contacts and sync resolvers both call
these; each error names its field (`UserError` paths in camelCase). `record_change` logs
every change of a contact, whoever made it (a resolver, or a job such as the CRM lookup)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core import keys
from core.errors import Code, UserError
from core.events import Outbox
from core.permissions import Permission, Principal
from domain import contact_fields as cf
from models.contacts import AttributeDefinition, AttributeSource, ChangeKind, Contact, ContactChange, SmsConsent
from services import webhooks
from services.segments import mark_for_segments

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
