"""Attribute definitions: the fields a workspace's contacts carry (custom ones, and the
platform ones the widget and SDKs fill), listed, created, changed, reordered and deleted
with their values."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from core.context import Context
from core.db import dialect
from core.errors import Code, UserError, UserFailure, forbidden
from core.permissions import Permission, PrincipalKind
from core.scoping import decode_global_id
from domain import contact_fields as cf
from models.contacts import AttributeDefinition, AttributeSource, AttributeType
from resolvers.contacts import workspace_matching_key
from resolvers.pagination import Order, Page, paginate
from services.contacts import BUILT_IN_FIELDS

# Filled by the widget and SDKs from the platform; read-only to agents and integrators.
PLATFORM_ATTRIBUTES = [
    ("app_version", "App version", AttributeType.TEXT),
    ("sdk_version", "SDK version", AttributeType.TEXT),
    ("device_model", "Device model", AttributeType.TEXT),
    ("session_count", "Sessions", AttributeType.NUMBER),
]


async def list_definitions(ctx: Context, *, first: int | None, after: str | None) -> Page[AttributeDefinition]:
    if ctx.require_principal().kind is PrincipalKind.CONTACT:
        raise forbidden("Contact sessions cannot read attribute definitions.")
    order = Order(("position", "id"), descending=False)
    return await paginate(ctx.scope.all(AttributeDefinition), order, first=first, after=after, default_size=100)


async def create_definition(
    ctx: Context,
    *,
    key: str,
    label: str,
    type: AttributeType,
    options: list[str],
    crm_managed: bool,
    searchable: bool,
    visible: bool,
) -> AttributeDefinition:
    ctx.require(Permission.ATTRIBUTES_MANAGE)
    ws = ctx.scope.workspace_id
    errors: list[UserError] = []
    if not cf.ATTRIBUTE_KEY.match(key):
        errors.append(
            UserError(
                ["key"], Code.INVALID, "key: lowercase letters, digits and _, starting with a letter, at most 64."
            )
        )
    elif key in BUILT_IN_FIELDS:
        errors.append(UserError(["key"], Code.TAKEN, f"{key} is a built-in contact field."))
    elif await AttributeDefinition.filter(workspace_id=ws, key=key).exists():
        errors.append(UserError(["key"], Code.TAKEN, "An attribute with this key exists."))
    clean_label = label.strip()
    if not clean_label or len(clean_label) > 120:
        errors.append(UserError(["label"], Code.INVALID, "label has 1 to 120 characters."))
    clean_options = _validate_options(type, options, errors)
    if errors:
        raise UserFailure(*errors)
    last = await AttributeDefinition.filter(workspace_id=ws).order_by("-position").first()
    return await AttributeDefinition.create(
        workspace_id=ws,
        key=key,
        label=clean_label,
        type=type,
        options=clean_options,
        source=AttributeSource.CUSTOM,
        crm_managed=crm_managed,
        searchable=searchable,
        visible=visible,
        position=(last.position + 1) if last else 0,
    )


def _validate_options(kind: AttributeType, options: list[str], errors: list[UserError]) -> list[str]:
    if kind is not AttributeType.LIST:
        if options:
            errors.append(UserError(["options"], Code.INVALID, "Only list attributes have options."))
        return []
    clean = [o.strip() for o in options]
    if not clean or any(not o or len(o) > 120 for o in clean) or len(set(clean)) != len(clean) or len(clean) > 200:
        errors.append(
            UserError(
                ["options"], Code.INVALID, "A list attribute needs 1 to 200 distinct options of 1 to 120 characters."
            )
        )
    return clean


async def update_definition(ctx: Context, gid: str, values: dict[str, Any]) -> AttributeDefinition:
    ctx.require(Permission.ATTRIBUTES_MANAGE)
    definition = await ctx.scope.by_global_id(gid, "AttributeDefinition", AttributeDefinition)
    if definition is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No attribute definition with this id.")
    errors: list[UserError] = []
    if definition.source is AttributeSource.PLATFORM and set(values) - {"visible", "searchable", "label"}:
        errors.append(UserError(["id"], Code.READ_ONLY, "Platform attributes can only be relabelled, shown or hidden."))
    if "label" in values:
        label = (values["label"] or "").strip()
        if not label or len(label) > 120:
            errors.append(UserError(["label"], Code.INVALID, "label has 1 to 120 characters."))
        values["label"] = label
    if "options" in values:
        values["options"] = _validate_options(definition.type, values["options"] or [], errors)
    if errors:
        raise UserFailure(*errors)
    for name, value in values.items():
        if value is None and name in ("crm_managed", "searchable", "visible"):
            continue
        setattr(definition, name, value)
    await definition.save()
    return definition


async def delete_definition(ctx: Context, gid: str) -> str:
    ctx.require(Permission.ATTRIBUTES_MANAGE)
    definition = await ctx.scope.by_global_id(gid, "AttributeDefinition", AttributeDefinition)
    if definition is None:
        raise UserFailure.of("id", Code.NOT_FOUND, "No attribute definition with this id.")
    if definition.source is AttributeSource.PLATFORM:
        raise UserFailure.of("id", Code.READ_ONLY, "Platform attributes cannot be deleted.")
    if await workspace_matching_key(definition.workspace_id) == definition.key:
        raise UserFailure.of(
            "id",
            Code.CONFLICT,
            f"{definition.key} is the workspace's matching attribute: choose another "
            "matching attribute (updateWorkspace) before deleting it.",
        )
    async with in_transaction() as conn:
        # Strip the values too, in the database: no contact is loaded into Python.
        if dialect() == "postgres":
            await conn.execute_query(
                "UPDATE contacts SET attributes = attributes - $1::text "
                "WHERE workspace_id = $2 AND attributes ? $1::text",
                [definition.key, definition.workspace_id],
            )
        else:
            await conn.execute_query(
                "UPDATE contacts SET attributes = json_remove(attributes, '$.' || ?) "
                "WHERE workspace_id = ? AND json_type(attributes, '$.' || ?) IS NOT NULL",
                [definition.key, definition.workspace_id, definition.key],
            )
        await definition.delete()
    return gid


async def reorder_definitions(ctx: Context, gids: list[str]) -> list[AttributeDefinition]:
    ctx.require(Permission.ATTRIBUTES_MANAGE)
    scope = ctx.scope
    all_defs = {d.id: d for d in await scope.all(AttributeDefinition)}
    ids: list[int] = []
    for i, gid in enumerate(gids):
        decoded = decode_global_id(gid)
        if decoded is None or decoded[0] != "AttributeDefinition" or decoded[1] not in all_defs:
            raise UserFailure.of(["ids", str(i)], Code.NOT_FOUND, "No attribute definition with this id.")
        ids.append(decoded[1])
    if sorted(ids) != sorted(all_defs):
        raise UserFailure.of("ids", Code.INVALID, "List every attribute definition exactly once.")
    async with in_transaction():
        for position, pk in enumerate(ids):
            if all_defs[pk].position != position:
                all_defs[pk].position = position
                await all_defs[pk].save(update_fields=["position"])
    return [all_defs[pk] for pk in ids]
