"""The demo workspace of `parley seed --demo` (and of `make run` on an empty database):
contacts with attributes, tags and events, conversations with replies, a segment and a
live proactive message, so the README's queries answer something. Everything but the
workspace itself is made through the GraphQL API, in process, as a client would: the
rows are exactly what the API makes, with its events and jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from domain.identity import user_hash
from ops.operators import OperatorError, create_workspace

OWNER_EMAIL = "owner@example.com"
CHANNEL_LABEL = "widget channel"

ATTRIBUTES = [("plan", "Plan", "LIST", ["free", "pro", "enterprise"]), ("seats", "Seats", "NUMBER", None)]
CONTACTS = [
    # Not the README's Ada Lovelace (ada@example.com, +442071838750): its createContact must not meet a TAKEN.
    {
        "name": "Ada Byron",
        "email": "ada.byron@example.com",
        "phone": "+442079460000",
        "country": "GB",
        "city": "London",
        "tags": ["vip", "beta"],
        "plan": "enterprise",
        "seats": 40,
    },
    {
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "country": "US",
        "city": "Arlington",
        "tags": ["vip"],
        "plan": "pro",
        "seats": 12,
    },
    {
        "name": "Alan Turing",
        "email": "alan@example.com",
        "country": "GB",
        "city": "Manchester",
        "tags": ["beta"],
        "plan": "pro",
        "seats": 3,
    },
    {
        "name": "Katherine Johnson",
        "email": "katherine@example.com",
        "country": "US",
        "city": "Hampton",
        "tags": [],
        "plan": "free",
        "seats": 1,
    },
    {
        "name": "Linus Torvalds",
        "email": "linus@example.com",
        "country": "FI",
        "city": "Helsinki",
        "tags": ["beta"],
        "plan": "free",
        "seats": 1,
    },
]
# (contact index, the contact's message, the owner's reply)
CONVERSATIONS = [
    (0, "Hello! Can we add ten more seats to our plan?", "Of course: I have added them; the invoice follows."),
    (1, "The export of my contacts is taking a while.", "It runs in the background: you get a link when it is ready."),
    (2, "Is there an API for events?", "Yes: trackEvent, with an API key that has events:write."),
]


@dataclass
class Demo:
    slug: str
    password: str
    api_key: str
    channel_key: str

    def text(self) -> str:
        return (
            "Demo workspace (made by `parley seed --demo`; a known password: never in production)\n"
            f"  workspace slug   {self.slug}\n"
            f"  owner login      {OWNER_EMAIL} / {self.password}\n"
            f"  API key          {self.api_key}\n"
            f"  {CHANNEL_LABEL}   {self.channel_key}\n"
        )


class _Client:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, doc: str, variables: dict[str, Any], token: str, root: str) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body = (await self.http.post("/graphql", json={"query": doc, "variables": variables}, headers=headers)).json()
        payload = (body.get("data") or {}).get(root)
        if body.get("errors") or payload is None or payload.get("userErrors"):
            raise OperatorError(f"seeding the demo: {root} answered {body}")
        return payload  # type: ignore[no-any-return]


E = "userErrors { field code message }"


async def seed_demo(password: str | None = None) -> Demo:
    """A new demo workspace with its contents. Needs the database migrated and REDIS_URL."""
    from asgi import app
    from core.config import settings

    password = password or settings.parley_demo_password
    boot = await create_workspace("Demo", OWNER_EMAIL, password, "Demo Owner")
    demo = Demo(slug=boot.workspace.slug, password=password, api_key=boot.api_key, channel_key=boot.channel.public_key)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://parley.demo") as http,
    ):
        api = _Client(http)
        login = await api(
            f"mutation($i: LoginInput!) {{ login(input: $i) {{ token {E} }} }}",
            {"i": {"email": OWNER_EMAIL, "password": password, "workspace": demo.slug}},
            "",
            "login",
        )
        owner = login["token"]
        for key, label, kind, options in ATTRIBUTES:
            await api(
                f"mutation($i: CreateAttributeDefinitionInput!) {{ createAttributeDefinition(input: $i) {{ {E} }} }}",
                {"i": {"key": key, "label": label, "type": kind, "options": options}},
                owner,
                "createAttributeDefinition",
            )
        contact_ids = []
        for i, person in enumerate(CONTACTS):
            values = {k: v for k, v in person.items() if k not in ("plan", "seats")}
            values["externalId"] = f"demo-{i + 1}"
            values["attributes"] = [
                {"key": "plan", "value": person["plan"]},
                {"key": "seats", "value": person["seats"]},
            ]
            made = await api(
                f"mutation($i: CreateContactInput!) {{ createContact(input: $i) {{ contact {{ id }} {E} }} }}",
                {"i": values},
                demo.api_key,
                "createContact",
            )
            contact_ids.append(made["contact"]["id"])
            for name, properties in (
                ("signed_up", {"plan": person["plan"]}),
                ("invited_teammate", {"seats": person["seats"]}),
            ):
                await api(
                    f"mutation($i: TrackEventInput!) {{ trackEvent(input: $i) {{ {E} }} }}",
                    {"i": {"contactId": made["contact"]["id"], "name": name, "properties": properties}},
                    demo.api_key,
                    "trackEvent",
                )
        for index, question, answer in CONVERSATIONS:
            session = await api(
                f"mutation($i: StartContactSessionInput!) {{ startContactSession(input: $i) {{ token {E} }} }}",
                {
                    "i": {
                        "channelKey": demo.channel_key,
                        "externalId": f"demo-{index + 1}",
                        # The demo widget verifies identities, as every new one does.
                        "userHash": user_hash(boot.channel.secret, f"demo-{index + 1}"),
                        "device": {"os": "macOS", "browser": "Firefox"},
                    }
                },
                "",
                "startContactSession",
            )
            started = await api(
                (
                    f"mutation($i: StartConversationInput!) {{ startConversation(input: $i) {{ "
                    f"conversation {{ id }} {E} }} }}"
                ),
                {"i": {"body": question, "websiteUrl": "https://shop.example/pricing"}},
                session["token"],
                "startConversation",
            )
            await api(
                f"mutation($i: SendMessageInput!) {{ sendMessage(input: $i) {{ {E} }} }}",
                {"i": {"conversationId": started["conversation"]["id"], "body": answer}},
                owner,
                "sendMessage",
            )
        await api(
            f"mutation($i: CreateSegmentInput!) {{ createSegment(input: $i) {{ {E} }} }}",
            {
                "i": {
                    "name": "VIP customers",
                    "rules": {
                        "match": "ALL",
                        "conditions": [{"field": "tag", "operator": "EQUALS", "value": {"text": "vip"}}],
                    },
                }
            },
            owner,
            "createSegment",
        )
        channels = await http.post(
            "/graphql",
            json={"query": "{ channels { edges { node { id kind } } } }"},
            headers={"authorization": f"Bearer {owner}"},
        )
        channel_id = next(
            e["node"]["id"] for e in channels.json()["data"]["channels"]["edges"] if e["node"]["kind"] == "WEB_WIDGET"
        )
        made = await api(
            (
                f"mutation($i: CreateProactiveMessageInput!) {{ createProactiveMessage(input: $i) {{ "
                f"proactiveMessage {{ id }} {E} }} }}"
            ),
            {
                "i": {
                    "name": "Pricing help",
                    "text": "Questions about our plans? We answer in minutes.",
                    "channelId": channel_id,
                    "rules": {"match": "ALL", "conditions": []},
                    "sendWindow": "ANY_TIME",
                    "frequency": "EVERY_TIME",
                }
            },
            owner,
            "createProactiveMessage",
        )
        await api(
            f"mutation($i: ProactiveMessageIdInput!) {{ publishProactiveMessage(input: $i) {{ {E} }} }}",
            {"i": {"id": made["proactiveMessage"]["id"]}},
            owner,
            "publishProactiveMessage",
        )
    write_credentials(demo)
    return demo


def credentials_file() -> Path:
    """DATA_DIR/demo-credentials.txt: what `parley run` prints every time."""
    from core.config import settings

    return Path(settings.data_dir) / "demo-credentials.txt"


def demo_channel_key() -> str | None:
    """The demo widget channel's public key, from the credentials file; None without one."""
    path = credentials_file()
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        label, _, value = line.strip().partition("   ")
        if label == CHANNEL_LABEL:
            return value.strip()
    return None


def write_credentials(demo: Demo) -> None:
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(demo.text())
