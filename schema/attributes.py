"""Attribute definitions: the fields a workspace's contacts carry (`attributeDefinitions`,
mounted on ContactQuery, and the mutations that manage them)."""

from __future__ import annotations

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import contacts as m
from resolvers import attributes as r
from runtime.guards import guard
from schema.common import Connection, ContactIdInput, DeletePayload, UserError, mutate, provided, to_connection

AttributeType = strawberry.enum(m.AttributeType, name="AttributeType")
AttributeSource = strawberry.enum(m.AttributeSource, name="AttributeSource")


def _contact_view_refusal(ctx: Context, d: AttributeDefinition) -> str | None:
    # A contact session sees the definitions of the values it is shown, and no others.
    if ctx.viewing_contact_id is not None and not shown_to_contacts(d):
        return "Contact sessions see visible attributes that are not CRM-managed only."
    return None


def shown_to_contacts(d: AttributeDefinition | m.AttributeDefinition) -> bool:
    return d.visible and not d.crm_managed


@guard(_contact_view_refusal)
@strawberry.type
class AttributeDefinition(relay.Node):
    id: relay.NodeID[int]
    key: str
    label: str
    type: AttributeType  # type: ignore[valid-type]
    options: list[str]
    source: AttributeSource  # type: ignore[valid-type]
    crm_managed: bool
    searchable: bool
    visible: bool
    position: int

    @classmethod
    def from_model(cls, d: m.AttributeDefinition) -> AttributeDefinition:
        return cls(
            id=d.id,
            key=d.key,
            label=d.label,
            type=d.type,
            options=list(d.options or []),
            source=d.source,
            crm_managed=d.crm_managed,
            searchable=d.searchable,
            visible=d.visible,
            position=d.position,
        )


@strawberry.input
class CreateAttributeDefinitionInput:
    key: str
    label: str
    type: AttributeType  # type: ignore[valid-type]
    options: list[str] | None = None
    crm_managed: bool = False
    searchable: bool = False
    visible: bool = True


@strawberry.input
class UpdateAttributeDefinitionInput:
    id: relay.GlobalID
    label: str | None = strawberry.UNSET
    options: list[str] | None = strawberry.UNSET
    crm_managed: bool | None = strawberry.UNSET
    searchable: bool | None = strawberry.UNSET
    visible: bool | None = strawberry.UNSET


@strawberry.input
class ReorderAttributeDefinitionsInput:
    ids: list[relay.GlobalID] = strawberry.field(description="Every definition, in the new order.")


@strawberry.type
class AttributeDefinitionPayload:
    attribute_definition: AttributeDefinition | None = None
    user_errors: list[UserError]


@strawberry.type
class ReorderAttributeDefinitionsPayload:
    attribute_definitions: list[AttributeDefinition] | None = None
    user_errors: list[UserError]


async def attribute_definitions(
    info: Info[Context, None], first: int | None = None, after: str | None = None
) -> Connection[AttributeDefinition]:
    return to_connection(
        await r.list_definitions(info.context, first=first, after=after), AttributeDefinition.from_model
    )


@strawberry.type
class AttributeMutation:
    @strawberry.mutation
    async def create_attribute_definition(
        self, info: Info[Context, None], input: CreateAttributeDefinitionInput
    ) -> AttributeDefinitionPayload:
        work = r.create_definition(
            info.context,
            key=input.key,
            label=input.label,
            type=input.type,
            options=input.options or [],
            crm_managed=input.crm_managed,
            searchable=input.searchable,
            visible=input.visible,
        )
        return await mutate(
            AttributeDefinitionPayload, work, lambda d: {"attribute_definition": AttributeDefinition.from_model(d)}
        )

    @strawberry.mutation(description="Relabel, change options, or toggle crmManaged, searchable and visible.")
    async def update_attribute_definition(
        self, info: Info[Context, None], input: UpdateAttributeDefinitionInput
    ) -> AttributeDefinitionPayload:
        values = provided(input, ("label", "options", "crm_managed", "searchable", "visible"))
        work = r.update_definition(info.context, str(input.id), values)
        return await mutate(
            AttributeDefinitionPayload, work, lambda d: {"attribute_definition": AttributeDefinition.from_model(d)}
        )

    @strawberry.mutation(description="Removes a custom attribute and its value from every contact.")
    async def delete_attribute_definition(self, info: Info[Context, None], input: ContactIdInput) -> DeletePayload:
        return await mutate(
            DeletePayload, r.delete_definition(info.context, str(input.id)), lambda _: {"deleted_id": input.id}
        )

    @strawberry.mutation
    async def reorder_attribute_definitions(
        self, info: Info[Context, None], input: ReorderAttributeDefinitionsInput
    ) -> ReorderAttributeDefinitionsPayload:
        work = r.reorder_definitions(info.context, [str(i) for i in input.ids])
        return await mutate(
            ReorderAttributeDefinitionsPayload,
            work,
            lambda defs: {"attribute_definitions": [AttributeDefinition.from_model(d) for d in defs]},
        )
