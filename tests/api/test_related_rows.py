"""`Scope.rows_by_id`, the plain rows behind every related field (a conversation's contact,
assignee, last message), and `first_rows`, the first page of a list: each column as the
model has it, and only the caller's workspace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.scoping import Scope, first_rows
from models.contacts import Contact, SmsConsent
from models.conversations import Conversation, DeliveryState, Direction, Message, SenderKind
from models.workspaces import Workspace
from resolvers.conversations import CONVERSATION_COLUMNS
from tests.conftest import Tenant, pk


def columns_of(model: object) -> dict[str, object]:
    return {name: getattr(model, name) for name in type(model)._meta.fields_db_projection}  # type: ignore[attr-defined]


async def test_rows_hold_each_column_as_the_model_does(tenant: Tenant) -> None:
    seen = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    contact = await Contact.create(
        workspace_id=tenant.workspace.id,
        name="Zoë",
        email="zoe@example.com",
        vip=True,
        sms_consent=SmsConsent.SUBSCRIBED,
        attributes={"plan": "pro", "seats": 3},
        first_seen_at=seen,
        last_seen_at=seen,
    )
    conversation = await Conversation.create(
        workspace_id=tenant.workspace.id, contact_id=contact.id, channel_id=tenant.channel.id
    )
    message = await Message.create(
        workspace_id=tenant.workspace.id,
        conversation_id=conversation.id,
        sender_kind=SenderKind.CONTACT,
        direction=Direction.INBOUND,
        body="Hello",
        delivery_state=DeliveryState.RECEIVED,
    )
    for model, row in (
        (Contact, contact),
        (Conversation, conversation),
        (Message, message),
        (Workspace, tenant.workspace),
    ):
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


async def test_a_first_page_is_what_the_query_builder_would_read(tenant: Tenant, make_tenant: object) -> None:
    """Ties, NULLs (a conversation without messages) and both directions, on each database: the same rows in the
    same order with the same values as Tortoise's `.order_by().limit().values()`."""
    other: Tenant = await make_tenant()  # type: ignore[operator]
    await other.contact(name="Theirs")
    seen = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    ws = tenant.workspace.id
    await Contact.bulk_create(
        [
            Contact(
                workspace_id=ws,
                name=f"C{i}",
                email=f"c{i}@example.com",
                vip=i % 3 == 0,
                attributes={"n": i},
                last_seen_at=seen - timedelta(minutes=i // 3),
            )
            for i in range(30)
        ]
    )
    contacts = await Contact.filter(workspace_id=ws).limit(5)
    for i, contact in enumerate(contacts):
        await Conversation.create(
            workspace_id=ws,
            contact_id=contact.id,
            channel_id=tenant.channel.id,
            vip=i % 2 == 0,
            last_message_at=seen if i < 3 else None,
        )
    scope = Scope(ws)
    cases = [
        (Contact, ("id", "name", "email", "vip", "attributes", "last_seen_at"), ("-last_seen_at", "-id")),
        (Contact, ("id", "last_seen_at"), ("last_seen_at", "id")),
        (Conversation, CONVERSATION_COLUMNS, ("-vip", "-last_message_at", "-id")),
    ]
    for model, names, sort in cases:
        for limit in (1, 7, 100):
            found = await first_rows(scope.all(model), names, sort, limit)
            expected = await model.filter(workspace_id=ws).order_by(*sort).limit(limit).values(*names)
            assert found == expected, (model.__name__, sort, limit)
            assert [list(row) for row in found] == [list(names)] * len(found)
    assert len(await first_rows(scope.all(Contact), ("id",), ("-id",), 100) or []) == 30  # not the other workspace's


async def test_only_an_unrefined_scope_is_read_by_first_rows(tenant: Tenant) -> None:
    """A filter, an ordering or a limit makes another query: first_rows leaves it to the
    query builder, and a name that is not a column too."""
    only = pk((await tenant.contact(name="Only"))["id"])
    scope = Scope(tenant.workspace.id)
    assert await first_rows(scope.all(Contact), ("id", "name"), ("-id",), 5) == [{"id": only, "name": "Only"}]
    for refined in (
        scope.all(Contact).filter(name="Someone else"),
        scope.all(Contact).filter(),
        scope.all(Contact).limit(1),
        scope.all(Contact).order_by("name"),
        Contact.filter(workspace_id=tenant.workspace.id),
    ):
        assert await first_rows(refined, ("id", "name"), ("-id",), 5) is None
    assert await first_rows(scope.all(Contact), ("id", "workspace__name"), ("-id",), 5) is None


async def test_first_page_plans_are_bounded(tenant: Tenant, monkeypatch: object) -> None:
    """The columns follow each query's selection: the plans kept stay at the bound."""
    from core import scoping

    monkeypatch.setattr(scoping, "PAGE_PLANS_MAX", 2)  # type: ignore[attr-defined]
    monkeypatch.setattr(scoping, "_page_plans", {})  # type: ignore[attr-defined]
    only = pk((await tenant.contact(name="Only", email="only@example.com"))["id"])
    scope = Scope(tenant.workspace.id)
    for names in (("id",), ("id", "name"), ("id", "email"), ("name", "id"), ("id", "name", "email")):
        rows = await first_rows(scope.all(Contact), names, ("-id",), 5)
        assert rows == [{n: {"id": only, "name": "Only", "email": "only@example.com"}[n] for n in names}]
        assert len(scoping._page_plans) <= 2


async def test_rows_by_id_of_some_columns_hold_those_columns_and_their_plans_are_bounded(
    tenant: Tenant, make_tenant: object, monkeypatch: object
) -> None:
    """`columns_by_id` (an inbox page's contacts): the columns asked for, converted as the
    model has them, of this workspace only; the plans follow selections, so are bounded."""
    from core import scoping

    monkeypatch.setattr(scoping, "ROW_PLANS_MAX", 2)  # type: ignore[attr-defined]
    monkeypatch.setattr(scoping, "_row_plans", {})  # type: ignore[attr-defined]
    other: Tenant = await make_tenant()  # type: ignore[operator]
    theirs = pk((await other.contact(name="Theirs"))["id"])
    seen = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    ours = await Contact.create(
        workspace_id=tenant.workspace.id,
        name="Ours",
        vip=True,
        sms_consent=SmsConsent.SUBSCRIBED,
        attributes={"plan": "pro"},
        last_seen_at=seen,
    )
    stored = columns_of(await Contact.get(id=ours.id))
    scope = Scope(tenant.workspace.id)
    for names in (
        ("id",),
        ("id", "name", "vip"),
        ("id", "sms_consent", "attributes", "last_seen_at"),
        ("id", "name", "vip"),
    ):
        found = await scope.columns_by_id(Contact, [ours.id, theirs], names)
        assert found == {ours.id: {n: stored[n] for n in names}}
        assert len(scoping._row_plans) <= 2
    assert found[ours.id]["vip"] is True
    rows = await scope.columns_by_id(Contact, [ours.id], ("id", "sms_consent", "attributes", "last_seen_at"))
    assert rows[ours.id]["sms_consent"] is SmsConsent.SUBSCRIBED and rows[ours.id]["last_seen_at"] == seen
