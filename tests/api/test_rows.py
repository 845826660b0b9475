"""List pages build their Strawberry objects from plain rows without the dataclass
`__init__` (schema.common.build). Such an object must hold exactly what `__init__` would
have set: a field added to a type and forgotten in its `from_row` would otherwise read as
missing only when a client selects it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from models import contacts as m
from resolvers.conversations import CONVERSATION_COLUMNS
from schema.contacts import ROW_FIELDS, Contact
from schema.conversations import Conversation


def _init_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def test_a_contact_built_from_a_row_equals_one_built_by_its_constructor() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    full: dict[str, Any] = {f: f"v-{f}" for f in ROW_FIELDS} | {
        "id": 7,
        "sms_consent": "subscribed",
        "attributes": {"plan": "pro"},
        "last_seen_at": now,
    }
    for row in ({"id": 3}, {"id": 4, "name": "Ada", "email": "ada@example.com"}, full):
        built = Contact.from_row(row)
        assert set(vars(built)) == _init_fields(Contact)
        expected = Contact(
            id=row["id"],
            **{f: row.get(f) for f in ROW_FIELDS},
            _attributes=row.get("attributes") or {},
            sms_consent=m.SmsConsent(row["sms_consent"]) if "sms_consent" in row else None,
        )
        assert built == expected
    assert Contact.from_row(full).sms_consent is m.SmsConsent.SUBSCRIBED


def test_a_conversation_built_from_a_row_equals_one_built_by_its_constructor() -> None:
    row = {column: f"v-{column}" for column in CONVERSATION_COLUMNS}
    built = Conversation.from_row(row)
    assert set(vars(built)) == _init_fields(Conversation)
    fk = {"contact_id", "channel_id", "topic_id", "assignee_id", "team_id", "last_message_id"}
    assert built == Conversation(**{f"_{k}" if k in fk else k: v for k, v in row.items()})
