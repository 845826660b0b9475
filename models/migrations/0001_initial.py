import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from models.channels import ChannelKind
from models.contacts import AttributeSource, AttributeType, ChangeKind, EventKind, SmsConsent
from models.workspaces import MatchingAttribute, Role


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Workspace",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("name", fields.CharField(max_length=120)),
                ("slug", fields.CharField(unique=True, max_length=64)),
                ("time_zone", fields.CharField(default="UTC", max_length=64)),
                (
                    "matching_attribute",
                    fields.CharEnumField(
                        default=MatchingAttribute.EMAIL,
                        description="EMAIL: email\nPHONE: phone\nEXTERNAL_ID: external_id\nCUSTOM: custom",
                        enum_type=MatchingAttribute,
                        max_length=11,
                    ),
                ),
                ("matching_attribute_key", fields.CharField(null=True, max_length=64)),
                ("agents_can_edit_crm_attributes", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "workspaces", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Agent",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="agents",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("email", fields.CharField(max_length=254)),
                ("name", fields.CharField(max_length=120)),
                ("password_hash", fields.CharField(max_length=255)),
                (
                    "role",
                    fields.CharEnumField(
                        default=Role.AGENT,
                        description="OWNER: owner\nADMIN: admin\nAGENT: agent",
                        enum_type=Role,
                        max_length=5,
                    ),
                ),
                ("can_edit_contact_identity", fields.BooleanField(default=False)),
                ("time_zone", fields.CharField(default="UTC", max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("last_login_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "agents", "app": "models", "unique_together": (("workspace", "email"),), "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ApiKey",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="api_keys",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("prefix", fields.CharField(unique=True, max_length=16)),
                ("key_hash", fields.CharField(max_length=64)),
                (
                    "scopes",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("last_used_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "api_keys",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A key for integrators. Only a SHA-256 of the secret is kept, the prefix finds the row.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AttributeDefinition",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="attribute_definitions",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("key", fields.CharField(max_length=64)),
                ("label", fields.CharField(max_length=120)),
                (
                    "type",
                    fields.CharEnumField(
                        description="TEXT: text\nNUMBER: number\nBOOLEAN: boolean\nDATE: date\nLIST: list",
                        enum_type=AttributeType,
                        max_length=7,
                    ),
                ),
                (
                    "options",
                    fields.JSONField(
                        default=list, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                (
                    "source",
                    fields.CharEnumField(
                        default=AttributeSource.CUSTOM,
                        description="PLATFORM: platform\nCUSTOM: custom",
                        enum_type=AttributeSource,
                        max_length=8,
                    ),
                ),
                ("crm_managed", fields.BooleanField(default=False)),
                ("searchable", fields.BooleanField(default=False)),
                ("visible", fields.BooleanField(default=True)),
                ("position", fields.IntField(default=0)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "attribute_definitions",
                "app": "models",
                "unique_together": (("workspace", "key"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Channel",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="channels",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="WEB_WIDGET: web_widget\nMOBILE_SDK: mobile_sdk\nEMAIL: email\nSMS: sms\nMESSENGER: messenger",
                        enum_type=ChannelKind,
                        max_length=10,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("public_key", fields.CharField(unique=True, max_length=64)),
                ("secret", fields.CharField(max_length=64)),
                ("identity_verification", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "channels", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Contact",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="contacts",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(null=True, max_length=200)),
                ("email", fields.CharField(null=True, max_length=254)),
                ("phone", fields.CharField(null=True, max_length=20)),
                ("external_id", fields.CharField(null=True, max_length=128)),
                ("country", fields.CharField(null=True, max_length=2)),
                ("city", fields.CharField(null=True, max_length=120)),
                ("time_zone", fields.CharField(null=True, max_length=64)),
                ("locale", fields.CharField(null=True, max_length=35)),
                ("browser_language", fields.CharField(null=True, max_length=35)),
                ("os", fields.CharField(null=True, max_length=64)),
                ("browser", fields.CharField(null=True, max_length=64)),
                ("ip", fields.CharField(null=True, max_length=45)),
                ("referrer", fields.CharField(null=True, max_length=2048)),
                ("platform", fields.CharField(null=True, max_length=32)),
                ("gdpr_consent", fields.BooleanField(default=False)),
                ("gdpr_consent_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "sms_consent",
                    fields.CharEnumField(
                        default=SmsConsent.NEVER,
                        description="SUBSCRIBED: subscribed\nUNSUBSCRIBED: unsubscribed\nNEVER: never",
                        enum_type=SmsConsent,
                        max_length=12,
                    ),
                ),
                ("sms_consent_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("vip", fields.BooleanField(default=False)),
                ("blocked", fields.BooleanField(default=False)),
                (
                    "attributes",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("first_seen_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("last_seen_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "contacts",
                "app": "models",
                "unique_together": (("workspace", "external_id"),),
                "indexes": [
                    Index(fields=["workspace_id", "last_seen_at", "id"]),
                    Index(fields=["workspace_id", "email"]),
                    Index(fields=["workspace_id", "phone"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContactChange",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("contact_id", fields.IntField()),
                (
                    "kind",
                    fields.CharEnumField(
                        description="CREATED: created\nUPDATED: updated\nDELETED: deleted",
                        enum_type=ChangeKind,
                        max_length=7,
                    ),
                ),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "contact_changes",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "id"])],
                "pk_attr": "id",
                "table_description": "Ordered log of contact changes, its id is the cursor events and sync reads carry.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContactEvent",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="events",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="PAGE_VIEW: page_view\nEVENT: event", enum_type=EventKind, max_length=9
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                ("url", fields.CharField(null=True, max_length=2048)),
                ("title", fields.CharField(null=True, max_length=500)),
                (
                    "properties",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
                ("occurred_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "contact_events",
                "app": "models",
                "indexes": [
                    Index(fields=["contact_id", "occurred_at", "id"]),
                    Index(fields=["workspace_id", "name", "occurred_at"]),
                ],
                "pk_attr": "id",
                "table_description": "A page view or a named event on the timeline of a contact.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContactNote",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="notes",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "author",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="author_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("body", fields.TextField(unique=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "contact_notes",
                "app": "models",
                "indexes": [Index(fields=["contact_id", "created_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContactTag",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "contact",
                    fields.ForeignKeyField(
                        "models.Contact",
                        source_field="contact_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="tags",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "contact_tags",
                "app": "models",
                "unique_together": (("contact", "name"),),
                "indexes": [Index(fields=["workspace_id", "name"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="DeletedContact",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name_hint", fields.CharField(null=True, max_length=64)),
                ("email_hint", fields.CharField(null=True, max_length=64)),
                ("phone_hint", fields.CharField(null=True, max_length=32)),
                ("platform", fields.CharField(null=True, max_length=32)),
                (
                    "deleted_by",
                    fields.ForeignKeyField(
                        "models.Agent",
                        source_field="deleted_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("deleted_by_name", fields.CharField(max_length=120)),
                ("deleted_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "deleted_contacts",
                "app": "models",
                "indexes": [Index(fields=["workspace_id", "deleted_at"])],
                "pk_attr": "id",
                "table_description": "The audit record a deletion leaves behind: masked hints only, never the data.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Team",
            fields=[
                ("id", fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "workspace",
                    fields.ForeignKeyField(
                        "models.Workspace",
                        source_field="workspace_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="teams",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=120)),
                (
                    "members",
                    fields.ManyToManyField(
                        "models.Agent",
                        unique=True,
                        db_constraint=True,
                        through="team_members",
                        forward_key="agent_id",
                        backward_key="teams_id",
                        related_name="teams",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={"table": "teams", "app": "models", "unique_together": (("workspace", "name"),), "pk_attr": "id"},
            bases=["Model"],
        ),
    ]
