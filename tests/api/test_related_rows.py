"""`Scope.rows_by_id`, the plain rows behind every related field (a conversation's contact,
assignee, last message): each column as the model has it, and only the caller's workspace."""

from __future__ import annotations

from datetime import UTC, datetime

from core.scoping import Scope
from models.contacts import Contact, SmsConsent
from models.conversations import Conversation, DeliveryState, Direction, Message, SenderKind
from models.workspaces import Workspace
from tests.conftest import Tenant, pk


def columns_of(model: object) -> dict[str, object]:
    return {name: getattr(model, name) for name in type(model)._meta.fields_db_projection}  # type: ignore[attr-defined]


async def test_rows_hold_each_column_as_the_model_does(tenant: Tenant) -> None:
    seen = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    contact = await Contact.create(workspace_id=tenant.workspace.id, name="Zoë", email="zoe@example.com", vip=True,
                                   sms_consent=SmsConsent.SUBSCRIBED, attributes={"plan": "pro", "seats": 3},
                                   first_seen_at=seen, last_seen_at=seen)  # fmt: skip
    conversation = await Conversation.create(workspace_id=tenant.workspace.id, contact_id=contact.id, channel_id=tenant.channel.id)
    message = await Message.create(workspace_id=tenant.workspace.id, conversation_id=conversation.id, sender_kind=SenderKind.CONTACT,
                                   direction=Direction.INBOUND, body="Hello", delivery_state=DeliveryState.RECEIVED)  # fmt: skip
    for model, row in ((Contact, contact), (Conversation, conversation), (Message, message), (Workspace, tenant.workspace)):
        found = await Scope(tenant.workspace.id).rows_by_id(model, [row.id, 10**9])
        stored = await model.get(id=row.id)
        assert list(found) == [row.id]
        assert vars(found[row.id]) == columns_of(stored), model.__name__
    plain = vars((await Scope(tenant.workspace.id).rows_by_id(Contact, [contact.id]))[contact.id])
    assert plain["attributes"] == {"plan": "pro", "seats": 3} and plain["vip"] is True
    assert plain["sms_consent"] is SmsConsent.SUBSCRIBED and plain["last_seen_at"] == seen


async def test_rows_of_another_workspace_are_not_found(tenant: Tenant, make_tenant: object) -> None:
    other: Tenant = await make_tenant()  # type: ignore[operator]
    theirs, ours = pk((await other.contact(name="Theirs"))["id"]), pk((await tenant.contact(name="Ours"))["id"])
    assert list(await Scope(tenant.workspace.id).rows_by_id(Contact, [theirs, ours])) == [ours]
    assert await Scope(tenant.workspace.id).rows_by_id(Workspace, [other.workspace.id]) == {}
    assert list(await Scope(tenant.workspace.id).rows_by_id(Workspace, [tenant.workspace.id])) == [tenant.workspace.id]
