"""Verified contacts (issue 22, part 1): contacts.identity_source. Written by hand.

Who set the contact's identity (its external id and the workspace's matching attribute
value), models.contacts.IdentitySource: `trusted` (an agent, an API key, a CRM sync, an
inbound e-mail/SMS/messenger channel), `verified_session` (a widget/SDK session with a
valid userHash: its external id is proven, nothing else) or `session` (an unverified
widget/SDK session: an anonymous visitor, whatever it claimed).

Existing rows: a contact with an external id got it from someone who may have been a CRM,
so it is `trusted` (no unverified session may resume it from now on); so is every contact
that no widget or SDK session created (`platform` is null for agents' and API keys'
contacts, the channel's kind for inbound ones). Only contacts a session created without an
external id, anonymous visitors, start as `session`. Erring towards trusted is the safe
side: a `session` contact can be resumed by an unverified session (in a workspace that
verifies no channel) and gives up its external id to a trusted writer; a trusted one
cannot be reached without a userHash. (What it costs: a visitor of a workspace without
verification, identified by an external id before the upgrade, gets a new contact at its
next unverified session.)

The column defaults to 'trusted', in the database too (see models/contacts.py). It is added in
SQL, as in 0008; going back drops it with ALTER TABLE … DROP COLUMN (Tortoise's
RemoveField would rebuild the table on SQLite and lose its indexes).
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from models.contacts import IdentitySource

ANONYMOUS_VISITORS = (
    "UPDATE contacts SET identity_source = 'session' "
    "WHERE external_id IS NULL AND platform IN ('web_widget', 'mobile_sdk')"
)
FORWARD = {
    "postgres": (
        "ALTER TABLE contacts ADD COLUMN identity_source VARCHAR(16) NOT NULL DEFAULT 'trusted'",
        ANONYMOUS_VISITORS,
    ),
    "sqlite": (
        "ALTER TABLE contacts ADD COLUMN identity_source VARCHAR(16) NOT NULL DEFAULT 'trusted'",
        ANONYMOUS_VISITORS,
    ),
}


class AddIdentitySource(ops.AddField):
    """AddField for the migration state; the column itself is added and filled in SQL."""

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is None:
            return
        for sql in FORWARD[state_editor.client.capabilities.dialect]:
            await state_editor._run_sql(sql)

    async def database_backward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql("ALTER TABLE contacts DROP COLUMN identity_source")


class Migration(migrations.Migration):
    dependencies = [("models", "0011_campaigns")]

    initial = False

    operations = [
        AddIdentitySource(
            model_name="Contact",
            name="identity_source",
            field=fields.CharEnumField(default=IdentitySource.TRUSTED, enum_type=IdentitySource, max_length=16),
        ),
    ]
