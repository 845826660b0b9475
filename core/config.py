"""Settings, read once from the environment (and an optional `.env` file).

from core.config import settings
settings.database_url      # 'sqlite://data/parley.sqlite3' unless DATABASE_URL is set
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from limits import parse_many
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# SECRET_KEY values published in Parley's source (the old built-in default): anybody could
# sign tokens with them, so no server starts with one, whatever ENV says.
PUBLISHED_SECRETS = frozenset({"dev-only-secret-change-me-before-production"})
# Where a dev run keeps the random secret it made (under DATA_DIR), readable by its owner only.
DEV_SECRET_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite://data/parley.sqlite3"
    # Unset: `parley run` starts a private redis-server (core/embedded_redis.py).
    redis_url: str | None = None
    # Every Redis key and channel starts with this, so several deployments (or test runs)
    # can share one Redis server without hearing each other.
    redis_prefix: str = "parley"
    # Signs tokens and download links. Required when ENV=prod; unset in dev, a random one is
    # made once and kept in DATA_DIR/secret_key (mode 0600), so tokens survive restarts.
    secret_key: str = ""
    # Files this deployment keeps for itself (the dev secret).
    data_dir: str = "data"
    allowed_origins: list[str] = Field(default_factory=list)

    agent_token_ttl_seconds: int = 12 * 3600
    # A password reset token (e-mailed by requestPasswordReset) works once, this long.
    password_reset_ttl_seconds: int = 3600
    # Set: the reset e-mail links to this page with `?token=…` (your front end's reset form).
    password_reset_url: str | None = None
    contact_token_ttl_seconds: int = 30 * 24 * 3600

    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    max_page_size: int = 100
    # What one operation may cost (core/cost.py): a field 1, page sizes multiply, heavy
    # fields weigh more. The heaviest screens cost ~2,000 (the inbox at first: 100).
    max_query_cost: int = 10_000
    # What one request may hold (core/limits.py), refused before any work is done on it.
    # A 1,000-row syncContacts (its maximum) with every contact field, 10 attributes and 5
    # tags a row measured 1.09 MB of JSON (1.17 MB indented; bench/sync.py's rows 0.56 MB):
    # 4 MiB leaves room for 20 attributes and 10 tags a row (1.9 MB) twice over.
    max_body_bytes: int = 4 * 1024 * 1024
    # JSON values in a body: that 1,000-row sync holds 54,000 (89,000 with 20 attributes).
    max_json_values: int = 200_000
    max_json_depth: int = 32
    max_document_chars: int = 100_000
    # WebSockets (runtime/http.py, runtime/websocket.py): a message's size, the sockets one principal
    # holds open on one API process, the operations running on one socket.
    ws_max_message_bytes: int = 256 * 1024
    max_sockets_per_principal: int = 20
    max_subscriptions_per_socket: int = 50
    # argon2 hashes and verifications running at once (threads, off the event loop): each
    # keeps a core busy for a while, so more than the cores would only queue in the OS.
    password_hash_concurrency: int = 2
    # A subscriber whose queue holds this many undelivered events is disconnected.
    subscriber_queue_size: int = 256

    # Outbound mail (core/mail.py). Unset SMTP_HOST: sending mail raises MailNotConfigured.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    # "starttls" upgrades a plain connection (usually port 587), "tls" connects over TLS
    # (usually 465), "none" never encrypts: for a mail catcher on the same machine.
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_timeout_seconds: float = 10
    mail_from: str = "Parley <no-reply@parley.localhost>"

    # Where users reach this deployment: absolute links (export downloads, in the API and
    # in e-mails) start with it.
    public_url: str = "http://127.0.0.1:8000"
    # Exports (jobs/exports.py): where the CSV files go, how long a signed download link
    # stays valid, and how many contacts each keyset batch reads.
    export_dir: str = "data/exports"
    export_link_ttl_seconds: int = 24 * 3600
    export_batch_size: int = 5000
    # Export files are deleted this long after their job finished.
    export_retention_days: int = 7

    # Attachments (core/storage.py, resolvers/attachments.py). Where the disk store keeps the
    # files. A workspace without a policy of its own (setAttachmentPolicy) takes at most
    # ATTACHMENT_MAX_BYTES a file, of ATTACHMENT_CONTENT_TYPES ("image/*" matches every
    # image); no policy may allow more than ATTACHMENT_MAX_BYTES_CEILING, which also caps a
    # multipart request's whole body. How long a download link and a direct-upload URL
    # stay valid; at most this many files a message.
    attachment_dir: str = "data/attachments"
    attachment_max_bytes: int = 10 * 1024 * 1024
    attachment_max_bytes_ceiling: int = 100 * 1024 * 1024
    attachment_content_types: list[str] = Field(
        default_factory=lambda: [
            "image/png",
            "image/jpeg",
            "image/gif",
            "image/webp",
            "image/heic",
            "application/pdf",
            "text/plain",
            "text/csv",
            "audio/*",
            "video/mp4",
            "video/quicktime",
            "application/zip",
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ]
    )
    attachment_link_ttl_seconds: int = 3600
    attachment_upload_ttl_seconds: int = 900
    attachments_per_message: int = 10

    # Every request to a URL a user wrote (core/outbound.py: webhooks, SMS and messenger
    # gateways): whether it may reach loopback, private, link-local and other non-global
    # addresses (unset: only in dev; WEBHOOK_ALLOW_PRIVATE_NETWORKS is its old name, still
    # read), and the whole exchange's deadline where the caller sets none.
    outbound_allow_private_networks: bool | None = Field(
        default=None,
        validation_alias=AliasChoices("outbound_allow_private_networks", "webhook_allow_private_networks"),
    )
    outbound_timeout_seconds: float = 10

    # Outbound webhooks (jobs/webhooks.py): each POST's timeout; attempts per delivery,
    # the first retry's delay (doubling after each failure, at most an hour); failed
    # attempts in a row after which an endpoint is disabled.
    webhook_timeout_seconds: float = 10
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 30
    webhook_disable_after: int = 20

    # CRM lookup (jobs/crm.py): each signed POST's timeout, tries per conversation (the
    # first retry after crm_lookup_retry_base_seconds, doubling), and how long a CRM's
    # answer about a contact is kept in Redis and reused for its next conversations.
    crm_lookup_timeout_seconds: float = 5
    crm_lookup_tries: int = 3
    crm_lookup_retry_base_seconds: float = 10
    crm_lookup_cache_seconds: int = 3600

    # Campaigns (jobs/campaigns.py): recipients per batch (one transaction each); a pause
    # between batches (seconds, a send-rate throttle; 0: none); how long a running
    # campaign may go without finishing a batch before the sweep hands it to another worker;
    # batches in flight at once (on PostgreSQL each on its own connection: a batch's
    # foreign-key checks run in its server process, so two use two cores; SQLite has one
    # writer, and there one batch publishes while the next is written). Unset batch size:
    # 2,000 on PostgreSQL; 500 on SQLite, whose one write lock every request waits for (a
    # batch of 500 holds it ~35 ms, of 2,000 ~140 ms).
    campaign_batch_size: int | None = None
    campaign_concurrency: int = 2
    campaign_batch_pause: float = 0
    campaign_stale_seconds: float = 120

    # Bulk actions (jobs/bulk.py): contacts per batch (one transaction each, its effects and
    # the action's high-water mark together); a pause between batches (seconds; 0: none);
    # how long a running action may go without finishing a batch before the sweep queues
    # it again (its worker died).
    bulk_batch_size: int = 500
    bulk_batch_pause: float = 0
    bulk_stale_seconds: float = 60

    # Mobile push notifications (jobs/push.py, docs/push.md). Where APNs and FCM are (tests
    # point these at loopback servers); how long after an agent's or bot's reply a contact
    # with no live subscription is pushed (later replies within it ride on the same
    # notification); each request's timeout; the first retry's delay after a 429, a 5xx
    # or no answer (doubling; a longer Retry-After wins), and attempts per device.
    push_apns_url: str = "https://api.push.apple.com"
    push_apns_sandbox_url: str = "https://api.sandbox.push.apple.com"
    push_fcm_url: str = "https://fcm.googleapis.com"
    push_fcm_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    push_grace_seconds: float = 30
    push_timeout_seconds: float = 10
    push_retry_base_seconds: float = 5
    push_max_attempts: int = 5

    # The longest one SQL statement may run before the database stops it (PostgreSQL's
    # statement_timeout; on SQLite a progress handler, core/sqlite.py); 0: no limit. The API
    # and the CLI's seeding use DATABASE_STATEMENT_TIMEOUT_SECONDS: a request that runs into
    # it answers code TIMEOUT. The worker and migrations use WORKER_STATEMENT_TIMEOUT_SECONDS:
    # their statements are batched, but a full segment refresh or an index build over a large
    # table may take minutes, and a job is nobody's hostile request.
    database_statement_timeout_seconds: float = 30
    worker_statement_timeout_seconds: float = 600

    # SQLite (core/sqlite.py): how long a write waits for another process's write lock
    # before it gives up (a request answers BUSY, a job is retried).
    sqlite_write_wait_seconds: float = 15

    # GET /metrics wants `Authorization: Bearer <METRICS_TOKEN>` when set; unset, it is
    # open in dev and answers 404 in prod.
    metrics_token: str | None = None
    # OpenTelemetry traces (core/tracing.py): unset, none are made; set (http://collector:4318),
    # spans of requests, GraphQL operations and jobs go to <endpoint>/v1/traces (OTLP/HTTP),
    # as this service name.
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "parley"
    # Set: the worker serves its metrics (jobs run, failed and their duration) on this port,
    # all addresses, at any path (core/metrics.py). A worker sharing PROMETHEUS_MULTIPROC_DIR
    # with the API (`parley run` does) needs none: the API's /metrics has them too.
    worker_metrics_port: int | None = None
    # Addresses (or CIDR networks) of the proxies in front of the API: only from these is
    # X-Forwarded-For believed (core/client_ip.py). Empty: the peer is the client.
    trusted_proxies: list[str] = Field(default_factory=list)

    # Rate limits (core/ratelimit.py), shared by every API process through Redis. Each is
    # `limits` notation, several separated by `;` ("30/minute; 300/hour"); empty: no limit.
    # `login`: attempts per client address (a success counts too), and failed attempts per
    # account (e-mail) before the account is locked: for LOGIN_LOCKOUT_SECONDS, doubled at
    # each further lockout up to LOGIN_LOCKOUT_MAX_SECONDS; the doubling is forgotten after
    # LOGIN_LOCKOUT_MEMORY_SECONDS without a lockout, or at a successful login.
    rate_limit_login_per_ip: str = "30/minute"
    rate_limit_login_failures_per_account: str = "5/15 minutes"
    # requestPasswordReset per client address and per e-mail (known or not).
    rate_limit_password_reset_per_ip: str = "10/hour"  # noqa: S105 - a rate
    rate_limit_password_reset_per_account: str = "3/hour"  # noqa: S105 - a rate
    login_lockout_seconds: int = 60
    login_lockout_max_seconds: int = 3600
    login_lockout_memory_seconds: int = 24 * 3600
    # What anybody holding a widget or SDK key can call: `startContactSession` per channel
    # key and per address; `reportPageView`, `trackEvent` and `registerDevice` of contact
    # sessions per channel and per address (one budget for all three).
    rate_limit_contact_session_per_channel: str = "1200/minute"
    rate_limit_contact_session_per_ip: str = "60/minute"
    rate_limit_widget_events_per_channel: str = "12000/minute"
    rate_limit_widget_events_per_ip: str = "300/minute"
    # Files a contact session may send (multipart uploads and createUploadUrl together).
    rate_limit_attachments_per_contact: str = "60/hour"
    # POST /hooks/channels/{key}/inbound, per channel key.
    rate_limit_inbound_hook_per_channel: str = "1200/minute"
    # GET /l/{code} (short links), per address: each click is a write.
    rate_limit_short_link_per_ip: str = "120/minute"
    # Every GraphQL request over HTTP, per agent, API key or contact (anonymous: per address).
    rate_limit_graphql_per_principal: str = "6000/minute"
    # `setTyping` from a contact session, per contact (agents are only throttled).
    rate_limit_typing_per_contact: str = "60/minute"

    # Logging (core/logs.py): the root level, and one JSON object a line or readable text
    # (unset: JSON when ENV=prod, text in dev).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "text"] | None = None

    # Apollo's automatic persisted queries (runtime/persisted.py): how long a registered
    # document is kept in Redis after its registration, and at most how many are kept
    # (the oldest registrations go first); how long a browser or a CDN may keep the answer
    # to a GET that names its query by hash alone (0: not at all).
    persisted_query_ttl_seconds: int = 7 * 24 * 3600
    persisted_query_max_documents: int = 10_000
    persisted_query_cache_seconds: int = 60

    # The reference widget and inbox under /demo/ (runtime/demo_pages.py): unset, served in dev
    # and not in prod; true or false decides in either.
    demo_pages: bool | None = None

    # The demo owner's password (`parley seed --demo`, and `parley run` on an empty database).
    parley_demo_password: str = "parley-demo-password"  # noqa: S105 - the demo's, documented; set it for a shared demo

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @field_validator(
        "rate_limit_login_per_ip",
        "rate_limit_login_failures_per_account",
        "rate_limit_contact_session_per_channel",
        "rate_limit_contact_session_per_ip",
        "rate_limit_widget_events_per_channel",
        "rate_limit_widget_events_per_ip",
        "rate_limit_inbound_hook_per_channel",
        "rate_limit_short_link_per_ip",
        "rate_limit_graphql_per_principal",
        "rate_limit_typing_per_contact",
        "rate_limit_password_reset_per_ip",
        "rate_limit_password_reset_per_account",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        if value.strip():
            parse_many(value)  # ValueError on a typo, at startup rather than at the first request
        return value

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.secret_key in PUBLISHED_SECRETS:
            raise ValueError(
                "SECRET_KEY is the example value published in Parley's source: anybody could sign tokens with it. "
                "Set a random one (python -c 'import secrets; print(secrets.token_urlsafe(48))'), or, in dev, unset it "
                "to use a random one kept in DATA_DIR/secret_key."
            )
        if not self.secret_key:
            if self.env == "prod":
                raise ValueError("SECRET_KEY must be set when ENV=prod")
            self.secret_key = kept_dev_secret(Path(self.data_dir))
        if self.env == "prod" and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters when ENV=prod")
        return self

    @property
    def log_style(self) -> str:
        """LOG_FORMAT, or what it means unset: JSON in prod, text in dev."""
        return self.log_format or ("json" if self.env == "prod" else "text")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def serves_demo_pages(self) -> bool:
        return self.is_dev if self.demo_pages is None else self.demo_pages

    @cached_property
    def instance_id(self) -> str:
        """Names this process in logs and in presence keys."""
        return secrets.token_hex(4)


def kept_dev_secret(data_dir: Path) -> str:
    """The random secret of a dev run: made the first time (mode 0600), read afterwards.
    Processes starting at once (the API and the worker) agree: the file appears whole."""
    path = data_dir / DEV_SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{DEV_SECRET_FILE}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)  # fails when another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret: delete it (a new one is made) or set SECRET_KEY")
    return secret


settings = Settings()
