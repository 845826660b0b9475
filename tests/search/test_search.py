"""searchConversations through the GraphQL API, on the real database (SQLite's FTS5 or
PostgreSQL's tsvector): what is found where, relevance and highlights, stable pages,
the index kept in step on every write (messages, subject, contact changes, merges,
erasure), visibility as the inbox's, and hostile input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from strawberry import relay

from core.db import dialect
from tests.conftest import Api, Tenant
from tests.conversations.test_conversations import ASSIGN, START, ok, send, session, start

SEARCH = """query($q: String!, $view: InboxView, $filter: ConversationFilter, $first: Int, $after: String) {
  searchConversations(query: $q, view: $view, filter: $filter, first: $first, after: $after) {
    edges { cursor node { matchedIn highlight messageId conversation { id subject contact { name } } } }
    pageInfo { hasNextPage endCursor }
  } }"""


async def search(api: Api, token: str, q: str, **variables: Any) -> dict[str, Any]:
    return (await api(SEARCH, {"q": q, **variables}, token=token))["searchConversations"]  # type: ignore[no-any-return]


async def found(api: Api, token: str, q: str, **variables: Any) -> list[str]:
    return [e["node"]["conversation"]["id"] for e in (await search(api, token, q, **variables))["edges"]]


async def _key(tenant: Tenant, scopes: list[str]) -> str:
    doc = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }"
    data = await tenant.api(doc, {"i": {"name": "reader", "scopes": scopes}}, token=tenant.owner_token)
    return data["createApiKey"]["secret"]  # type: ignore[no-any-return]


async def conversation(tenant: Tenant, external_id: str, body: str, **extra: Any) -> str:
    token, _ = await session(tenant, external_id, **extra)
    return (await start(tenant, token, body=body))["conversation"]["id"]  # type: ignore[no-any-return]


async def test_messages_subject_and_contact_are_found_with_highlights(tenant: Tenant) -> None:
    api, owner = tenant.api, tenant.owner_token
    by_message = await conversation(tenant, "v1", "My parcel never arrived, order 1234")
    by_reply = await conversation(tenant, "v2", "Hello there")
    reply = await send(api, owner, by_reply, "We have refunded the <b>parcel</b> fee")
    by_contact = await conversation(tenant, "v3", "Hi", name="Zelda Quarterman", email="zelda@example.org")

    hits = (await search(api, owner, "parcel"))["edges"]
    assert {e["node"]["conversation"]["id"] for e in hits} == {by_message, by_reply}
    reply_hit = next(e["node"] for e in hits if e["node"]["conversation"]["id"] == by_reply)
    assert reply_hit["matchedIn"] == "MESSAGE" and reply_hit["messageId"] == reply["id"]
    # HTML: the matched word marked, and no other markup (the message's own is escaped on
    # SQLite, left out by PostgreSQL's ts_headline).
    assert "<mark>parcel</mark>" in reply_hit["highlight"]
    assert reply_hit["highlight"].replace("<mark>", "").replace("</mark>", "").count("<") == 0

    contact_hit = (await search(api, owner, "quarterman"))["edges"]
    assert [e["node"]["conversation"]["id"] for e in contact_hit] == [by_contact]
    assert contact_hit[0]["node"]["matchedIn"] == "CONTACT" and contact_hit[0]["node"]["messageId"] is None
    assert await found(api, owner, "zelda@example.org") == [by_contact]
    assert await found(api, owner, "zelda") == [by_contact]
    # A key that may not read contacts does not find (or see) them by their name or address.
    reader = await _key(tenant, ["conversations:read"])
    ids = "query($q: String!) { searchConversations(query: $q) { edges { node { highlight conversation { id } } } } }"
    assert (await api(ids, {"q": "zelda"}, token=reader))["searchConversations"]["edges"] == []
    assert len((await api(ids, {"q": "parcel"}, token=reader))["searchConversations"]["edges"]) == 2
    # Every word must match.
    assert await found(api, owner, "parcel 1234") == [by_message]
    assert await found(api, owner, "parcel nowhere") == []


async def test_the_subject_of_an_email_conversation_is_found(tenant: Tenant) -> None:
    contact = await tenant.contact(name="Ann Example", email="ann@example.com")
    doc = """mutation($i: CreateChannelInput!) { createChannel(input: $i) { channel { id } userErrors { code } } }"""
    email = (await tenant.api(doc, {"i": {"kind": "EMAIL", "name": "Mail"}}, token=tenant.owner_token))[
        "createChannel"
    ]["channel"]["id"]
    started = await ok(
        tenant.api,
        START,
        {"i": {"body": "See below", "contactId": contact["id"], "channelId": email, "subject": "Invoice overdue"}},
        tenant.owner_token,
        "startConversation",
    )
    hits = (await search(tenant.api, tenant.owner_token, "overdue"))["edges"]
    assert [e["node"]["conversation"]["id"] for e in hits] == [started["conversation"]["id"]]
    assert hits[0]["node"]["matchedIn"] == "SUBJECT"
    assert hits[0]["node"]["highlight"] == "Invoice <mark>overdue</mark>"


async def test_best_match_first_and_pages_follow_one_another(tenant: Tenant) -> None:
    api, owner = tenant.api, tenant.owner_token
    strong = await conversation(tenant, "s", "refund refund refund, I want my refund")
    ids = [await conversation(tenant, f"w{n}", f"a question about a refund, number {n}") for n in range(6)]
    assert (await found(api, owner, "refund"))[0] == strong
    seen: list[str] = []
    after = None
    while True:
        page = await search(api, owner, "refund", first=2, after=after)
        seen += [e["node"]["conversation"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen[0] == strong and sorted(seen) == sorted([strong, *ids])  # each once, none lost


async def test_relevance_is_measured_among_the_newest_matches(tenant: Tenant, monkeypatch: Any) -> None:
    import resolvers.search

    monkeypatch.setattr(resolvers.search, "MAX_RANKED", 2)
    ids = [await conversation(tenant, f"k{n}", "kiwi " * (3 - n)) for n in range(3)]
    page = (
        await tenant.api(SEARCH.replace("pageInfo {", "totalCount pageInfo {"), {"q": "kiwi"}, token=tenant.owner_token)
    )["searchConversations"]
    assert [e["node"]["conversation"]["id"] for e in page["edges"]] == [ids[1], ids[2]]  # the oldest, best, is out
    assert page["totalCount"] == 3


async def test_a_conversation_appears_once_for_its_best_match(tenant: Tenant) -> None:
    cid = await conversation(tenant, "x", "invoice please")
    for n in range(3):
        await send(tenant.api, tenant.owner_token, cid, f"your invoice {n} is attached")
    assert await found(tenant.api, tenant.owner_token, "invoice") == [cid]


async def test_contact_changes_and_merges_move_the_index(tenant: Tenant) -> None:
    api, owner = tenant.api, tenant.owner_token
    token, contact_id = await session(tenant, "c1", name="Old Name")
    cid = (await start(tenant, token, body="hello"))["conversation"]["id"]
    assert await found(api, owner, "old") == [cid]
    update = "mutation($i: UpdateContactInput!) { updateContact(input: $i) { userErrors { code } } }"
    await api(update, {"i": {"id": contact_id, "name": "Brand Newname", "email": "brand@example.net"}}, token=owner)
    assert await found(api, owner, "old") == []
    assert await found(api, owner, "newname") == [cid]
    assert await found(api, owner, "brand@example.net") == [cid]

    # Merged into another contact: the conversation is found by the primary's name.
    primary = await tenant.contact(name="Primary Person")
    merge = "mutation($i: MergeContactsInput!) { mergeContacts(input: $i) { userErrors { code message } } }"
    merged = await api(merge, {"i": {"primaryId": primary["id"], "secondaryId": contact_id}}, token=owner)
    assert merged["mergeContacts"]["userErrors"] == []
    assert cid in await found(api, owner, "primary")


async def test_erasing_a_contact_removes_it_from_the_index(tenant: Tenant) -> None:
    api, owner = tenant.api, tenant.owner_token
    token, contact_id = await session(tenant, "gone", name="Erased Person")
    cid = (await start(tenant, token, body="my secret passphrase xylophone"))["conversation"]["id"]
    await send(api, owner, cid, "noted your xylophone")
    assert await found(api, owner, "xylophone") == [cid]
    delete = "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }"
    assert (await api(delete, {"i": {"id": contact_id}}, token=owner))["deleteContact"]["userErrors"] == []
    assert await found(api, owner, "xylophone") == []
    assert await found(api, owner, "erased") == []
    # Gone from the index itself, not only hidden: no document, no indexed word.
    from tortoise import connections

    db = connections.get("default")
    left = await db.execute_query_dict(
        "SELECT count(*) AS n FROM search_documents WHERE workspace_id = " + str(tenant.workspace.id)
    )
    assert left[0]["n"] == 0
    if dialect() == "sqlite":
        words = await db.execute_query_dict(
            "SELECT count(*) AS n FROM search_documents_fts WHERE search_documents_fts MATCH 'xylophone'"
        )
        assert words[0]["n"] == 0


async def test_visibility_is_the_inboxs(tenant: Tenant) -> None:
    from models.workspaces import Team

    api = tenant.api
    me, my_token = await tenant.agent()
    team = await Team.create(workspace_id=tenant.workspace.id, name="Billing")
    await team.members.add(me)
    team_id = str(relay.GlobalID("Team", str(team.id)))
    teams = await conversation(tenant, "t1", "printer jammed")
    others = await conversation(tenant, "t2", "printer on fire")
    await ok(api, ASSIGN, {"i": {"id": teams, "teamId": team_id}}, tenant.owner_token, "assignConversation")
    assert await found(api, my_token, "printer", view="TEAM") == [teams]
    assert sorted(await found(api, my_token, "printer", view="ALL")) == sorted([teams, others])
    assert await found(api, my_token, "printer", filter={"teamId": team_id}) == [teams]
    assert await found(api, my_token, "printer", view="MINE") == []


async def test_another_workspace_and_contacts_find_nothing(tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant("Other")
    theirs = await conversation(other, "o1", "walrus sighting")
    mine = await conversation(tenant, "m1", "walrus sighting too")
    assert await found(tenant.api, tenant.owner_token, "walrus") == [mine]
    assert await found(tenant.api, tenant.api_key, "walrus") == [mine]
    assert await found(other.api, other.owner_token, "walrus") == [theirs]
    # A contact's session (even one with a conversation that matches) and the bare widget key.
    token, _ = await session(tenant, "m1")
    errors = await tenant.api.errors(SEARCH, {"q": "walrus"}, token=token)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN" and "data" not in errors[0]
    errors = await tenant.api.errors(SEARCH, {"q": "walrus"}, token=tenant.channel.public_key)
    assert errors[0]["extensions"]["code"] in {"UNAUTHENTICATED", "FORBIDDEN"}
    # Ids of another workspace in the filter find nothing (never the other's rows).
    other_channel = str(relay.GlobalID("Channel", str(other.channel.id)))
    assert await found(tenant.api, tenant.owner_token, "walrus", filter={"channelId": other_channel}) == []


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "a AND (b OR",
        "NEAR(x y)",
        "col:value",
        "* ^ -",
        "'; DROP TABLE messages; --",
        "\\",
        "x" * 200,
        "ÿ\u0000\u2028 émoji 🎉",
        "-",
        "OR",
        "!!!!",
    ],
)
async def test_hostile_queries_never_fail(tenant: Tenant, query: str) -> None:
    await conversation(tenant, "h", "an ordinary message")
    body = (await tenant.api.raw(SEARCH, {"q": query}, token=tenant.owner_token)).json()
    if "errors" in body:
        assert body["errors"][0]["extensions"]["code"] in {"REQUIRED", "INVALID"}, body
    else:
        assert body["data"]["searchConversations"]["edges"] == []


async def test_limits_are_named(tenant: Tenant) -> None:
    errors = await tenant.api.errors(SEARCH, {"q": "x" * 201}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "TOO_LONG" and "query" in errors[0]["message"]
    errors = await tenant.api.errors(SEARCH, {"q": "  "}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "REQUIRED"
    errors = await tenant.api.errors(SEARCH, {"q": "x", "first": 101}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "INVALID"
    errors = await tenant.api.errors(SEARCH, {"q": "x", "after": "bm90IGEgY3Vyc29y"}, token=tenant.owner_token)
    assert errors[0]["extensions"]["code"] == "INVALID"


async def test_a_page_costs_the_same_number_of_queries_whatever_its_size(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    from core.principal_cache import principal_cache

    for n in range(12):
        await conversation(tenant, f"n{n}", f"kettle broken {n}", name=f"Person {n}")
    doc = """query($first: Int) { searchConversations(query: "kettle", first: $first) { edges { node {
      highlight conversation { id contact { name } channel { name } lastMessage { body } } } } } }"""

    async def queries_for(first: int) -> int:
        principal_cache.invalidate()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="tortoise.db_client"):
            data = await tenant.api(doc, {"first": first}, token=tenant.owner_token)
        assert len(data["searchConversations"]["edges"]) == first
        return sum(1 for r in caplog.records if r.name == "tortoise.db_client")

    assert await queries_for(2) == await queries_for(12)


def test_highlights_are_escaped_html_with_marks() -> None:
    from resolvers.search import fts5_query, render_highlight

    assert (
        render_highlight("a <script>\x02x\x03</script> & b") == "a &lt;script&gt;<mark>x</mark>&lt;/script&gt; &amp; b"
    )
    assert fts5_query('say "hi" NEAR(x) -') == '"say" """hi""" "NEAR(x)"'


ADD_NOTE = """mutation($i: AddConversationNoteInput!) { addConversationNote(input: $i) {
  note { id } userErrors { field code message } } }"""


async def test_agents_notes_are_found_and_erased_with_their_contact(tenant: Tenant) -> None:
    api, owner = tenant.api, tenant.owner_token
    noted = await conversation(tenant, "n1", "Hello, a question about my order")
    added = (
        await api(ADD_NOTE, {"i": {"conversationId": noted, "body": "Breeds zebrafish, wants bulk"}}, token=owner)
    )["addConversationNote"]
    assert added["userErrors"] == []
    hits = (await search(api, owner, "zebrafish"))["edges"]
    assert [(e["node"]["conversation"]["id"], e["node"]["matchedIn"]) for e in hits] == [(noted, "NOTE")]
    assert "<mark>zebrafish</mark>" in hits[0]["node"]["highlight"]

    contact = (await api("query($id: ID!) { conversation(id: $id) { contact { id } } }", {"id": noted}, token=owner))[
        "conversation"
    ]["contact"]["id"]
    erased = await api(
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { userErrors { code } } }",
        {"i": {"id": contact}},
        token=owner,
    )
    assert erased["deleteContact"]["userErrors"] == []
    assert await found(api, owner, "zebrafish") == []
