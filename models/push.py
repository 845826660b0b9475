"""Mobile push notifications: the devices contacts register from an SDK, each channel's
provider credentials (APNs, FCM), and every attempt to push (the delivery log)."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.indexes import Index

from models.channels import Channel
from models.contacts import Contact
from models.workspaces import WorkspaceScoped


class DevicePlatform(StrEnum):
    IOS = "ios"  # APNs
    ANDROID = "android"  # FCM


class ApnsEnvironment(StrEnum):
    SANDBOX = "sandbox"  # development builds
    PRODUCTION = "production"


class PushOutcome(StrEnum):
    SENT = "sent"  # the provider accepted it
    RETRYING = "retrying"  # 429, 5xx or no answer: tried again later
    FAILED = "failed"  # refused, or out of attempts
    TOKEN_REMOVED = "token_removed"  # noqa: S105 - an outcome, not a secret; the provider said the token is gone: the device was removed


class Device(WorkspaceScoped):
    """A phone (an app install) that receives a contact's notifications. One token is one
    device: when someone else signs in on the phone the row moves to their contact."""

    channel: fields.ForeignKeyRelation[Channel] = fields.ForeignKeyField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE
    )
    channel_id: int
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name=False, on_delete=fields.CASCADE
    )
    contact_id: int
    platform = fields.CharEnumField(DevicePlatform)
    # The APNs device token (hex) or the FCM registration token.
    token = fields.CharField(max_length=512)
    # The app's bundle id (iOS) or package name (Android), as the SDK reports it.
    app_id = fields.CharField(max_length=255)
    locale = fields.CharField(max_length=35, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "push_devices"
        unique_together = (("workspace", "token"),)
        indexes = (Index(fields=("contact_id", "id")),)


class PushConfig(WorkspaceScoped):
    """A mobile SDK channel's push providers. The private parts (the .p8 key, the service
    account JSON) are sealed (core/sealed.py) and never leave the server; the ids beside
    them are not secret and are shown to admins."""

    channel: fields.OneToOneRelation[Channel] = fields.OneToOneField(
        "models.Channel", related_name=False, on_delete=fields.CASCADE
    )
    channel_id: int
    # APNs token-based authentication.
    apns_key_sealed = fields.TextField(null=True)
    apns_key_id = fields.CharField(max_length=10, null=True)
    apns_team_id = fields.CharField(max_length=10, null=True)
    apns_bundle_id = fields.CharField(max_length=255, null=True)
    apns_environment = fields.CharEnumField(ApnsEnvironment, default=ApnsEnvironment.PRODUCTION)
    # FCM HTTP v1: the service account's JSON, sealed; its project and e-mail in the clear.
    fcm_account_sealed = fields.TextField(null=True)
    fcm_project_id = fields.CharField(max_length=100, null=True)
    fcm_client_email = fields.CharField(max_length=255, null=True)
    # Off: a notification says "New reply" and carries ids; on: the reply's text too.
    show_message_text = fields.BooleanField(default=False)
    # On: nothing is pushed from 20:00 to 08:00 in the contact's time zone; it waits.
    respect_quiet_hours = fields.BooleanField(default=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "push_configs"


class PushAttempt(WorkspaceScoped):
    """One request to APNs or FCM for one device: what it answered (the delivery log)."""

    id = fields.BigIntField(primary_key=True)
    channel_id = fields.IntField()
    # Plain ids, not foreign keys: the log outlives a removed device; erasing the contact
    # erases its attempts (services/push.py).
    device_id = fields.IntField()
    contact_id = fields.IntField()
    conversation_id = fields.IntField()
    message_id = fields.BigIntField()
    platform = fields.CharEnumField(DevicePlatform)
    # The token's last characters: enough to tell devices apart, useless to send with.
    token_hint = fields.CharField(max_length=12)
    attempt = fields.IntField()
    outcome = fields.CharEnumField(PushOutcome)
    status_code = fields.IntField(null=True)
    # Our words, or the provider's reason code (Unregistered, UNREGISTERED, TooManyRequests…).
    error = fields.CharField(max_length=300, null=True)
    duration_ms = fields.IntField()
    at = fields.DatetimeField()

    class Meta:
        table = "push_attempts"
        indexes = (Index(fields=("workspace_id", "id")), Index(fields=("contact_id",)))
