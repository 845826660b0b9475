"""Erasure (issue 22, part 5): webhook deliveries name the contact they are about, so
deleteContact finds them by index; the audit record counts what a deletion removed.
Written by hand.

Deliveries written before this migration get their contact_id from their payload, as
`emit` (resolvers/webhooks.py) sets it: the global id at `data.contact.id`, else at
`data.conversation.contactId`, when it names a Contact. One UPDATE per
FILL_CHUNK deliveries (by id), so no statement holds a lock on the whole table (or runs into the
statement timeout) on a large delivery log. PostgreSQL decodes the base64 global id in
SQL; SQLite has no base64 function, so the decoding is a function registered on the
connection for the migration (the rows never leave the database).
"""

import base64
import binascii
from typing import Any

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

FILL_CHUNK = 10_000
MAX_CONTACT_ID = 2_147_483_647

_PG_GID = "COALESCE(payload #>> '{data,contact,id}', payload #>> '{data,conversation,contactId}')"
# Each step guarded by CASE, so nothing malformed reaches decode() or the cast.
_PG_TEXT = (
    f"CASE WHEN {_PG_GID} ~ '^([A-Za-z0-9+/]{{4}})*([A-Za-z0-9+/]{{2}}==|[A-Za-z0-9+/]{{3}}=)?$' "
    f"THEN encode(decode({_PG_GID}, 'base64'), 'escape') END"
)
FILL = {
    "postgres": (
        "UPDATE webhook_deliveries d SET contact_id = CAST(substr(s.txt, 9) AS integer) "  # noqa: S608
        f"FROM (SELECT id, {_PG_TEXT} AS txt FROM webhook_deliveries "
        "WHERE id > $1 AND id <= $2 AND contact_id IS NULL) s "
        "WHERE d.id = s.id AND s.txt ~ '^Contact:[1-9][0-9]{0,8}$' AND CAST(substr(s.txt, 9) AS bigint) <= 2147483647"
    ),
    "sqlite": (
        "UPDATE webhook_deliveries SET contact_id = parley_contact_of(COALESCE("
        "json_extract(payload, '$.data.contact.id'), json_extract(payload, '$.data.conversation.contactId'))) "
        "WHERE id > ? AND id <= ? AND contact_id IS NULL"
    ),
}


def contact_of(gid: Any) -> int | None:
    """The contact id a global id names ("Q29udGFjdDo0Mg==" -> 42), else None."""
    try:
        kind, _, pk = base64.b64decode(str(gid), validate=True).decode("ascii").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(pk) if kind == "Contact" and pk.isdigit() and 0 < int(pk) <= MAX_CONTACT_ID else None


async def fill_contact_ids(client: Any) -> None:
    """Set contact_id on the deliveries without one, FILL_CHUNK deliveries per statement."""
    dialect = client.capabilities.dialect
    if dialect == "sqlite":
        await client._connection.create_function("parley_contact_of", 1, contact_of, deterministic=True)
    ph = "$1" if dialect == "postgres" else "?"
    low = 0
    while True:
        # The id FILL_CHUNK rows on (by the primary key), however sparse the ids are.
        upper = await client.execute_query_dict(
            f"SELECT id FROM webhook_deliveries WHERE id > {ph} ORDER BY id LIMIT 1 OFFSET {FILL_CHUNK - 1}",  # noqa: S608
            [low],
        )
        high = int(upper[0]["id"]) if upper else 2**63 - 1
        await client.execute_query(FILL[dialect], [low, high])
        if not upper:
            return
        low = high


async def _fill(apps: Any, state_editor: Any) -> None:
    await fill_contact_ids(state_editor.client)


class Migration(migrations.Migration):
    dependencies = [("models", "0013_revocation")]

    initial = False

    operations = [
        ops.AddField(model_name="WebhookDelivery", name="contact_id", field=fields.IntField(null=True)),
        ops.AddIndex(model_name="WebhookDelivery", index=Index(fields=["contact_id"])),
        ops.AddField(model_name="DeletedContact", name="erased", field=fields.JSONField(null=True)),
        ops.RunPython(_fill, ops.RunPython.noop),
    ]
