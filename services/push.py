"""Mobile push notifications: what resolvers and jobs both call (docs/push.md).

    schedule_push(outbox, conversation, channel)   # after an agent's or bot's reply
    apns_key("-----BEGIN PRIVATE KEY-----…")       # the .p8 key, or ValueError saying why not
    service_account('{"type": "service_account", …}')
    answer = await send(config, device, notification)   # one request to APNs or FCM
    answer.ok, answer.token_gone, answer.retryable, answer.reason
    await erase_devices(contact_id); await move_devices(secondary_id, primary_id)

Provider tokens are cached in the process: the APNs JWT (ES256, signed with the .p8 key)
for 50 minutes (Apple refuses one older than an hour and throttles fresh ones), the FCM
OAuth2 access token until a minute before it expires. Requests go through core/outbound.py
to the URLs in settings, never to a URL a tenant wrote (the service account's own
`token_uri` is ignored).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from core import keys, outbound
from core.config import settings
from core.events import Outbox
from core.outbound import OutboundError, OutboundResponse
from core.queue import queue_job
from core.sealed import unseal
from models.channels import Channel, ChannelKind
from models.conversations import Conversation
from models.push import ApnsEnvironment, Device, DevicePlatform, PushAttempt, PushConfig

APNS_TOKEN_SECONDS = 50 * 60
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# The provider's reason code (APNs `reason`, FCM `errorCode` or `status`) is shown in the
# delivery log only when it looks like one: never free text from the remote side.
REASON = re.compile(r"[A-Za-z_]{1,64}")
MAX_ANSWER = 4096
# The largest RSA key a service account may have (Google issues 2,048-bit keys).
MAX_RSA_BITS = 4096

_apns_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
_fcm_tokens: dict[tuple[str, str], tuple[str, float]] = {}


# -- credentials ------------------------------------------------------------------------------


class KeyTooLarge(ValueError):
    pass


def _private_key(pem: bytes) -> PrivateKeyTypes:
    """A PEM private key, its size checked before OpenSSL's RSA consistency check, which
    is synchronous and grows steeply with the size: a 12,288-bit key (9.5 kB, well within
    MAX_SECRET) takes ~14 s of CPU to load, blocking the event loop (and again in the
    worker at every token). Google's service-account keys are 2,048 bits."""
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size > MAX_RSA_BITS:
            raise KeyTooLarge(f"of {key.key_size} bits: at most {MAX_RSA_BITS}.")
        key = serialization.load_pem_private_key(pem, password=None)  # now checked, cheaply
    return key


def apns_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The .p8 key Apple issues (a P-256 private key in PEM); ValueError saying what is wrong."""
    try:
        key = _private_key(pem.strip().encode())
    except KeyTooLarge as exc:
        raise ValueError("must be the P-256 key Apple issues for APNs (an ES256 .p8 key).") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError("is not a .p8 private key (PEM, BEGIN PRIVATE KEY).") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("must be the P-256 key Apple issues for APNs (an ES256 .p8 key).")
    return key


def service_account(text: str) -> dict[str, str]:
    """A Firebase service account's JSON key file; ValueError saying what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("is not JSON: paste the service account key file as downloaded.") from exc
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ValueError('must be a service account key file ("type": "service_account").')
    for name in ("project_id", "client_email", "private_key"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ValueError(f"has no {name}.")
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,29}", data["project_id"]):
        raise ValueError("has a project_id that is not a Firebase project id.")
    try:
        key = _private_key(data["private_key"].encode())
    except KeyTooLarge as exc:
        raise ValueError(f"has a private_key {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError("has a private_key that is not a PEM private key.") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("has a private_key that is not an RSA key.")
    return {k: str(v) for k, v in data.items() if isinstance(v, str)}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _apns_cache_key(pem: str, key_id: str, team_id: str) -> tuple[str, str, str]:
    return key_id, team_id, _digest(pem)


def _fcm_cache_key(account: dict[str, str]) -> tuple[str, str]:
    return account["client_email"], _digest(account["private_key"])


def apns_jwt(pem: str, key_id: str, team_id: str) -> str:
    """The provider token APNs wants: {"alg": "ES256", "kid"} · {"iss": team id, "iat"}."""
    cache_key = _apns_cache_key(pem, key_id, team_id)
    cached = _apns_tokens.get(cache_key)
    if cached is not None and time.monotonic() - cached[1] < APNS_TOKEN_SECONDS:
        return cached[0]
    token = jwt.encode({"iss": team_id, "iat": int(time.time())}, pem, algorithm="ES256", headers={"kid": key_id})
    _apns_tokens[cache_key] = (token, time.monotonic())
    return token


def forget_tokens() -> None:
    """Drop every cached provider token (tests, and a key that was replaced)."""
    _apns_tokens.clear()
    _fcm_tokens.clear()


class TokenRefused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.reason)
        self.answer = answer


async def fcm_access_token(account: dict[str, str]) -> str:
    """An OAuth2 access token for FCM: the service account's signed JWT exchanged at the
    token endpoint (RFC 7523), cached until a minute before it expires."""
    cache_key = _fcm_cache_key(account)
    cached = _fcm_tokens.get(cache_key)
    if cached is not None and time.monotonic() < cached[1]:
        return cached[0]
    issued = int(time.time())
    claims = {
        "iss": account["client_email"],
        "scope": FCM_SCOPE,
        "aud": settings.push_fcm_token_url,
        "iat": issued,
        "exp": issued + 3600,
    }
    headers = {"kid": account["private_key_id"]} if account.get("private_key_id") else None
    assertion = jwt.encode(claims, account["private_key"], algorithm="RS256", headers=headers)
    body = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}).encode()
    try:
        response = await outbound.post(
            settings.push_fcm_token_url,
            content=body,
            timeout=settings.push_timeout_seconds,
            headers={"content-type": "application/x-www-form-urlencoded"},
            max_bytes=MAX_ANSWER,
        )
    except OutboundError as exc:
        raise TokenRefused(Answer(None, f"token endpoint: {exc.reason}", retryable=exc.retryable)) from exc
    if not response.ok:
        reason = _reason(response, "error")
        raise TokenRefused(
            Answer(response.status, f"token endpoint: {reason or response.summary}", retryable=_transient(response))
        )
    try:
        data = json.loads(response.body)
        token, lifetime = str(data["access_token"]), int(data.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenRefused(
            Answer(response.status, "token endpoint: no access_token in its answer", retryable=True)
        ) from exc
    _fcm_tokens[cache_key] = (token, time.monotonic() + max(lifetime - 60, 0))
    return token


# -- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """What one push says; the SDK fetches the message itself by its id."""

    conversation_id: str  # global ids, as the API names them
    message_id: str
    title: str
    body: str
    badge: int

    @property
    def collapse_id(self) -> str:
        """One notification per conversation on the lock screen: a newer one replaces it."""
        return self.conversation_id


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer
    reason: str | None  # ours, or the provider's reason code
    retryable: bool = False
    token_gone: bool = False
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _transient(response: OutboundResponse) -> bool:
    return response.status in (408, 429) or response.status >= 500


def _reason(response: OutboundResponse, *path: str) -> str | None:
    """A reason code at `path` in the answer's JSON, if it looks like one."""
    try:
        value: Any = json.loads(response.body)
        for step in path:
            value = value[step]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return value if isinstance(value, str) and REASON.fullmatch(value) else None


def _fcm_error_code(response: OutboundResponse) -> str | None:
    """FCM v1's errorCode (UNREGISTERED, QUOTA_EXCEEDED…) from error.details, else error.status."""
    try:
        details = json.loads(response.body)["error"].get("details") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        details = []
    for detail in details if isinstance(details, list) else []:
        code = detail.get("errorCode") if isinstance(detail, dict) else None
        if isinstance(code, str) and REASON.fullmatch(code):
            return code
    return _reason(response, "error", "status")


async def send(config: PushConfig, device: Device, notification: Notification) -> Answer:
    """One notification to one device, through its platform's provider."""
    if device.platform is DevicePlatform.IOS:
        return await _send_apns(config, device, notification)
    return await _send_fcm(config, device, notification)


async def _post(url: str, body: dict[str, Any], headers: dict[str, str], *, http2: bool) -> OutboundResponse | Answer:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        return await outbound.post(
            url,
            content=content,
            headers={"content-type": "application/json", **headers},
            timeout=settings.push_timeout_seconds,
            max_bytes=MAX_ANSWER,
            http2=http2,
        )
    except OutboundError as exc:
        return Answer(None, exc.reason, retryable=exc.retryable)


async def _send_apns(config: PushConfig, device: Device, n: Notification) -> Answer:
    if not (config.apns_key_sealed and config.apns_key_id and config.apns_team_id and config.apns_bundle_id):
        return Answer(None, "APNs is not configured for this channel.")
    pem = unseal(config.apns_key_sealed)
    base = (
        settings.push_apns_sandbox_url if config.apns_environment is ApnsEnvironment.SANDBOX else settings.push_apns_url
    )
    body = {
        "aps": {
            "alert": {"title": n.title, "body": n.body},
            "badge": n.badge,
            "sound": "default",
            "thread-id": n.conversation_id,
            "mutable-content": 1,
        },
        "conversationId": n.conversation_id,
        "messageId": n.message_id,
    }
    headers = {
        "authorization": f"bearer {apns_jwt(pem, config.apns_key_id, config.apns_team_id)}",
        "apns-topic": config.apns_bundle_id,
        "apns-push-type": "alert",
        "apns-priority": "10",
        "apns-collapse-id": n.collapse_id,
        "apns-expiration": str(int(time.time()) + 24 * 3600),
    }
    response = await _post(f"{base.rstrip('/')}/3/device/{device.token}", body, headers, http2=True)
    if isinstance(response, Answer):
        return response
    if response.ok:
        return Answer(response.status, None)
    reason = _reason(response, "reason")
    if response.status == 410 or reason == "Unregistered":
        return Answer(response.status, reason or "Unregistered", token_gone=True)
    if response.status == 403 and reason == "ExpiredProviderToken":
        # A fresh token on the next try, for this key only: Apple throttles keys whose
        # tokens are renewed more often than every 20 minutes (TooManyProviderTokenUpdates).
        _apns_tokens.pop(_apns_cache_key(pem, config.apns_key_id, config.apns_team_id), None)
        return Answer(response.status, reason, retryable=True)
    return Answer(
        response.status, reason or response.summary, retryable=_transient(response), retry_after=response.retry_after
    )


async def _send_fcm(config: PushConfig, device: Device, n: Notification) -> Answer:
    if not (config.fcm_account_sealed and config.fcm_project_id):
        return Answer(None, "FCM is not configured for this channel.")
    account = json.loads(unseal(config.fcm_account_sealed))
    try:
        access_token = await fcm_access_token(account)
    except TokenRefused as exc:
        return exc.answer
    message = {
        "token": device.token,
        "notification": {"title": n.title, "body": n.body},
        "data": {"conversationId": n.conversation_id, "messageId": n.message_id, "badge": str(n.badge)},
        "android": {
            "collapse_key": n.collapse_id,
            "priority": "high",
            "notification": {"tag": n.collapse_id, "notification_count": n.badge},
        },
    }
    url = f"{settings.push_fcm_url.rstrip('/')}/v1/projects/{config.fcm_project_id}/messages:send"
    response = await _post(url, {"message": message}, {"authorization": f"Bearer {access_token}"}, http2=False)
    if isinstance(response, Answer):
        return response
    if response.ok:
        return Answer(response.status, None)
    code = _fcm_error_code(response)
    if code == "UNREGISTERED" or (response.status == 404 and code in (None, "NOT_FOUND")):
        return Answer(response.status, code or "UNREGISTERED", token_gone=True)
    if response.status == 401:
        _fcm_tokens.pop(_fcm_cache_key(account), None)  # expired or revoked: a new one on the next try
        return Answer(response.status, code or "UNAUTHENTICATED", retryable=True)
    return Answer(
        response.status, code or response.summary, retryable=_transient(response), retry_after=response.retry_after
    )


# -- when -------------------------------------------------------------------------------------


async def schedule_push(outbox: Outbox, conversation: Conversation, channel: Channel) -> None:
    """After an agent's or bot's reply in an SDK conversation whose contact has a device:
    a push job, deferred by the grace period, once per conversation (a reply while one
    waits rides on it)."""
    if channel.kind is not ChannelKind.MOBILE_SDK:
        return
    if not await Device.filter(contact_id=conversation.contact_id, channel_id=channel.id).exists():
        return
    queue_job(
        outbox,
        "push_conversation",
        conversation.id,
        job_id=keys.push_job(conversation.id),
        defer=timedelta(seconds=settings.push_grace_seconds),
    )


# -- contacts going away ----------------------------------------------------------------------


async def erase_devices(contact_id: int) -> int:
    """deleteContact: the contact's devices and its lines in the delivery log."""
    await PushAttempt.filter(contact_id=contact_id).delete()
    return int(await Device.filter(contact_id=contact_id).delete())


async def move_devices(from_contact_id: int, to_contact_id: int) -> None:
    """mergeContacts: the secondary's phones are the merged person's phones."""
    await Device.filter(contact_id=from_contact_id).update(contact_id=to_contact_id)
    await PushAttempt.filter(contact_id=from_contact_id).update(contact_id=to_contact_id)
