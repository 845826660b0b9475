"""Attribution: a contact's first reply within the workspace's window after the newest
campaign or proactive message it received is credited to that message (the conversation's
attributedSource, the message's replied counter); later replies, replies after the window
and replies of blocked contacts are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.proactive import ProactiveMessage
from services.attribution import record_receipts, source_key
from tests.conftest import Tenant, pk
from tests.conversations.test_conversations import ERRORS, ok, send, session, start

ATTRIBUTED = "query($id: ID!) { conversation(id: $id) { attributedSource } }"
WINDOW = (
    f"mutation($i: UpdateWorkspaceInput!) {{ updateWorkspace(input: $i) {{ "
    f"workspace {{ attributionWindowHours }} {ERRORS} }} }}"
)


async def received(tenant: Tenant, contact_gid: str, name: str, hours_ago: float) -> ProactiveMessage:
    """A proactive message the contact received `hours_ago`, as delivery records it."""
    message = await ProactiveMessage.create(workspace_id=tenant.workspace.id, name=name)
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    await record_receipts(tenant.workspace.id, source_key("proactive", message.id), [pk(contact_gid)], at)
    return message


async def attributed(tenant: Tenant, conversation_gid: str) -> str | None:
    return (await tenant.api(ATTRIBUTED, {"id": conversation_gid}, token=tenant.owner_token))["conversation"][
        "attributedSource"
    ]  # type: ignore[no-any-return]


async def replied(message: ProactiveMessage) -> int:
    await message.refresh_from_db(fields=["replied"])
    return message.replied


async def test_the_first_reply_in_the_window_is_credited_to_the_newest_message(tenant: Tenant) -> None:
    token, contact = await session(tenant, "attr-1")
    older = await received(tenant, contact, "Older", hours_ago=5)
    newest = await received(tenant, contact, "Newest", hours_ago=2)

    conversation = (await start(tenant, token, "Tell me more"))["conversation"]
    assert await attributed(tenant, conversation["id"]) == f"proactive:{newest.id}"
    assert (await replied(newest), await replied(older)) == (1, 0)

    # The second reply since is not attributed again.
    await send(tenant.api, token, conversation["id"], "And another thing")
    assert await replied(newest) == 1


async def test_a_reply_after_the_window_is_not_attributed_until_the_window_grows(tenant: Tenant) -> None:
    token, contact = await session(tenant, "attr-2")
    message = await received(tenant, contact, "Yesterday", hours_ago=30)

    conversation = (await start(tenant, token, "Hi"))["conversation"]
    assert await attributed(tenant, conversation["id"]) is None
    assert await replied(message) == 0

    payload = await ok(tenant.api, WINDOW, {"i": {"attributionWindowHours": 48}}, tenant.owner_token, "updateWorkspace")
    assert payload["workspace"]["attributionWindowHours"] == 48
    await send(tenant.api, token, conversation["id"], "Still there?")
    assert await attributed(tenant, conversation["id"]) == f"proactive:{message.id}"
    assert await replied(message) == 1


async def test_a_blocked_contacts_reply_is_not_attributed(tenant: Tenant) -> None:
    token, contact = await session(tenant, "attr-3")
    message = await received(tenant, contact, "Offer", hours_ago=1)
    block = f"mutation($i: ContactIdInput!) {{ blockContact(input: $i) {{ contact {{ id }} {ERRORS} }} }}"
    await ok(tenant.api, block, {"i": {"id": contact}}, tenant.owner_token, "blockContact")

    await start(tenant, token, "Hello")
    assert await replied(message) == 0


async def test_the_window_is_validated(tenant: Tenant) -> None:
    payload = (await tenant.api(WINDOW, {"i": {"attributionWindowHours": 0}}, token=tenant.owner_token))[
        "updateWorkspace"
    ]
    assert payload["userErrors"] == [
        {"field": ["attributionWindowHours"], "code": "INVALID", "message": "attributionWindowHours is 1 to 720 hours."}
    ]
    workspace = (await tenant.api("{ workspace { attributionWindowHours } }", token=tenant.owner_token))["workspace"]
    assert workspace["attributionWindowHours"] == 24
