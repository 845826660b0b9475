"""`inboxReport` on the real database: numbers checked against hand-computed ones for each
grouping, business hours in the per-conversation figures, a reopened conversation that is
not resolved any more, and who may read the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from strawberry import relay

from domain.schedule import DAYS
from models.channels import ChannelKind
from models.conversations import Conversation, ConversationStatus
from models.workspaces import Team
from tests.conftest import Api, Tenant
from tests.conversations.test_inbound import make_channel

ERRORS = "userErrors { field code message }"
STATS = "count medianSeconds p90Seconds"
ROW = (
    "day agent { id } team { id } channel { id } conversations resolved ratings averageRating "
    f"firstResponse {{ {STATS} }} resolution {{ {STATS} }}"
)
REPORT = f"""query($from: DateTime!, $to: DateTime!, $by: ReportGroupBy!) {{
  inboxReport(from: $from, to: $to, groupBy: $by) {{ rows {{ {ROW} }} total {{ {ROW} }} }} }}"""
FROM, TO = "2026-11-02T00:00:00Z", "2026-11-05T00:00:00Z"


def gid(type_name: str, pk: int) -> str:
    return str(relay.GlobalID(type_name, str(pk)))


async def report(api: Api, token: str, by: str, start: str = FROM, end: str = TO) -> dict[str, Any]:
    return (await api(REPORT, {"from": start, "to": end, "by": by}, token=token))["inboxReport"]


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def stats(count: int, median: int | None = None, p90: int | None = None) -> dict[str, Any]:
    return {"count": count, "medianSeconds": median, "p90Seconds": p90}


def figures(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["conversations"],
        row["resolved"],
        row["ratings"],
        row["averageRating"],
        row["firstResponse"],
        row["resolution"],
    )


async def test_report_numbers_match_hand_computed_ones(tenant: Tenant, make_tenant: Any) -> None:
    ann, _ = await tenant.agent()
    ben, _ = await tenant.agent()
    team = await Team.create(workspace_id=tenant.workspace.id, name="T")
    email = await make_channel(tenant, ChannelKind.EMAIL)
    widget = tenant.channel
    contact = await tenant.contact(name="Ada")
    contact_id = int(relay.GlobalID.from_id(contact["id"]).node_id)

    async def conversation(created: datetime, channel: Any, **figures: Any) -> None:
        resolved = figures.pop("resolved", False)
        await Conversation.create(
            workspace_id=channel.workspace_id,
            contact_id=contact_id if channel.workspace_id == tenant.workspace.id else figures.pop("contact_id"),
            channel_id=channel.id,
            status=ConversationStatus.RESOLVED if resolved else ConversationStatus.OPEN,
            resolved_at=created + timedelta(hours=1) if resolved and figures.get("resolution_seconds") else None,
            created_at=created,
            **figures,
        )

    # Figures in seconds, as the API stamps them (business hours already applied).
    await conversation(
        at(2, 10),
        widget,
        assignee_id=ann.id,
        team_id=team.id,
        first_response_seconds=60,
        resolution_seconds=600,
        resolved=True,
        rating=5,
    )
    await conversation(at(2, 11), widget, assignee_id=ann.id, team_id=team.id, first_response_seconds=120)
    await conversation(
        at(3, 9),
        email,
        assignee_id=ann.id,
        first_response_seconds=300,
        resolution_seconds=3000,
        resolved=True,
        rating=4,
    )
    await conversation(
        at(3, 12),
        widget,
        assignee_id=ben.id,
        team_id=team.id,
        first_response_seconds=30,
        resolution_seconds=900,
        resolved=True,
        rating=3,
    )
    await conversation(at(4, 8), email)
    await conversation(
        at(4, 9),
        email,
        assignee_id=ann.id,
        team_id=team.id,
        first_response_seconds=600,
        resolution_seconds=1200,
        resolved=True,
    )
    # A campaign's conversation: created resolved, by nobody.
    await conversation(at(4, 10), widget, resolved=True)
    # Outside the range (its end is excluded), and another workspace's.
    await conversation(at(5, 0), widget, assignee_id=ann.id, first_response_seconds=1, rating=1)
    other = await make_tenant("Other")
    stranger = await other.contact(name="Bob")
    await conversation(
        at(3, 10), other.channel, contact_id=int(relay.GlobalID.from_id(stranger["id"]).node_id), rating=1
    )

    by_agent = await report(tenant.api, tenant.owner_token, "AGENT")
    assert [(r["agent"] or {}).get("id") for r in by_agent["rows"]] == [
        gid("Agent", ann.id),
        gid("Agent", ben.id),
        None,
    ]
    ann_row, ben_row, nobody = by_agent["rows"]
    # ann: first responses 60, 120, 300, 600 -> median rank ceil(2) = 120, p90 rank ceil(3.6) = 600;
    # resolutions 600, 1200, 3000 -> median rank ceil(1.5) = 1200, p90 rank ceil(2.7) = 3000.
    assert figures(ann_row) == (4, 3, 2, 4.5, stats(4, 120, 600), stats(3, 1200, 3000))
    assert figures(ben_row) == (1, 1, 1, 3.0, stats(1, 30, 30), stats(1, 900, 900))
    assert figures(nobody) == (2, 0, 0, None, stats(0), stats(0))
    # All: first responses 30, 60, 120, 300, 600 -> 120 and 600; resolutions 600, 900, 1200, 3000 -> 900 and 3000.
    assert figures(by_agent["total"]) == (7, 4, 3, 4.0, stats(5, 120, 600), stats(4, 900, 3000))

    by_day = await report(tenant.api, tenant.owner_token, "DAY")
    assert [(r["day"], r["conversations"], r["firstResponse"]) for r in by_day["rows"]] == [
        ("2026-11-02", 2, stats(2, 60, 120)),
        ("2026-11-03", 2, stats(2, 30, 300)),
        ("2026-11-04", 3, stats(1, 600, 600)),
    ]
    by_channel = await report(tenant.api, tenant.owner_token, "CHANNEL")
    assert [(r["channel"]["id"], r["conversations"], r["resolved"]) for r in by_channel["rows"]] == [
        (gid("Channel", widget.id), 4, 2),
        (gid("Channel", email.id), 3, 2),
    ]
    by_team = await report(tenant.api, tenant.owner_token, "TEAM")
    assert [((r["team"] or {}).get("id"), r["conversations"]) for r in by_team["rows"]] == [
        (gid("Team", team.id), 4),
        (None, 3),
    ]
    # The other workspace sees only its own.
    theirs = await report(other.api, other.owner_token, "CHANNEL")
    assert figures(theirs["total"]) == (1, 0, 1, 1.0, stats(0), stats(0))


async def test_only_owners_admins_and_keys_with_the_scope_read_reports(tenant: Tenant) -> None:
    _, agent_token = await tenant.agent()
    _, admin_token = await tenant.agent(role="admin")
    session_doc = "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }"
    session = (await tenant.api(session_doc, {"i": {"channelKey": tenant.channel.public_key}}))["startContactSession"]
    key_doc = f"mutation($i: CreateApiKeyInput!) {{ createApiKey(input: $i) {{ secret {ERRORS} }} }}"
    keys = {}
    for scopes in (["reports:read"], ["conversations:read"]):
        made = await tenant.api(key_doc, {"i": {"name": scopes[0], "scopes": scopes}}, token=tenant.owner_token)
        keys[scopes[0]] = made["createApiKey"]["secret"]
    for token in (agent_token, session["token"], keys["conversations:read"], ""):
        errors = await tenant.api.errors(REPORT, {"from": FROM, "to": TO, "by": "DAY"}, token=token)
        assert errors[0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")
    for token in (admin_token, keys["reports:read"]):
        assert (await report(tenant.api, token, "DAY"))["total"]["conversations"] == 0

    for start, end in (("2026-01-01T00:00:00Z", "2027-01-03T00:00:00Z"), (TO, FROM), (FROM, FROM)):
        errors = await tenant.api.errors(REPORT, {"from": start, "to": end, "by": "DAY"}, token=tenant.owner_token)
        assert errors[0]["extensions"]["code"] == "INVALID" and errors[0]["message"].startswith("to:")


async def test_business_hours_and_a_reopened_conversation_in_the_figures(tenant: Tenant) -> None:
    """The widget is open one hour a day, which ended an hour ago: a conversation started
    three hours ago and answered now waited one business hour. Resolved, then reopened by
    the contact, it is not resolved any more, in its own figures and in the report."""
    started_at = datetime.now(UTC)
    zone = "UTC" if started_at.hour >= 3 else "Etc/GMT-12"  # keeps the hour two before now on the same day
    hour = started_at.astimezone(ZoneInfo(zone)).hour
    hours = {"timeZone": zone, "days": {d: [[f"{hour - 2:02d}:00", f"{hour - 1:02d}:00"]] for d in DAYS}}
    update = f"mutation($i: UpdateChannelInput!) {{ updateChannel(input: $i) {{ {ERRORS} }} }}"
    changed = await tenant.api(
        update, {"i": {"id": gid("Channel", tenant.channel.id), "businessHours": hours}}, token=tenant.owner_token
    )
    assert changed["updateChannel"]["userErrors"] == []

    session_doc = "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }"
    token = (await tenant.api(session_doc, {"i": {"channelKey": tenant.channel.public_key, "externalId": "ada"}}))[
        "startContactSession"
    ]["token"]
    start = (
        f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ conversation {{ id }} {ERRORS} }} }}"
    )
    conversation_id = (await tenant.api(start, {"i": {"body": "Help"}}, token=token))["startConversation"][
        "conversation"
    ]["id"]
    # It started three hours ago (the setup writes the time: the API stamps the real one).
    pk = int(relay.GlobalID.from_id(conversation_id).node_id)
    await Conversation.filter(id=pk).update(created_at=started_at - timedelta(hours=3))

    send = f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ {ERRORS} }} }}"
    status = f"mutation($i: SetConversationStatusInput!) {{ setConversationStatus(input: $i) {{ {ERRORS} }} }}"
    figures_doc = (
        "query($id: ID!) { conversation(id: $id) { status resolvedAt firstResponseSeconds resolutionSeconds } }"
    )

    async def own_figures() -> dict[str, Any]:
        return (await tenant.api(figures_doc, {"id": conversation_id}, token=tenant.owner_token))["conversation"]

    async def total() -> dict[str, Any]:
        day = timedelta(days=1)
        found = await report(
            tenant.api, tenant.owner_token, "DAY", (started_at - day).isoformat(), (started_at + day).isoformat()
        )
        return found["total"]  # type: ignore[no-any-return]

    await tenant.api(send, {"i": {"conversationId": conversation_id, "body": "Here"}}, token=tenant.owner_token)
    await tenant.api(status, {"i": {"id": conversation_id, "status": "RESOLVED"}}, token=tenant.owner_token)
    shown = await own_figures()
    assert (shown["status"], shown["firstResponseSeconds"], shown["resolutionSeconds"]) == ("RESOLVED", 3600, 3600)
    assert shown["resolvedAt"] is not None
    assert figures(await total()) == (1, 1, 0, None, stats(1, 3600, 3600), stats(1, 3600, 3600))

    await tenant.api(send, {"i": {"conversationId": conversation_id, "body": "It broke again"}}, token=token)
    shown = await own_figures()
    assert shown == {"status": "OPEN", "resolvedAt": None, "firstResponseSeconds": 3600, "resolutionSeconds": None}
    assert figures(await total()) == (1, 0, 0, None, stats(1, 3600, 3600), stats(0))
