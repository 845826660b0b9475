"""Push tests: stand-ins for APNs and FCM that are real HTTP servers on loopback (hypercorn:
HTTP/2 with prior knowledge for APNs, HTTP/1.1 for FCM and its OAuth2 token endpoint),
checking each request as the providers document it and answering as a test tells them.

    providers.apns.answer(500, 429)              # then 200s
    [request] = await providers.apns.wait_for(1)
    request.path, request.http_version, request.headers["apns-topic"], request.json()
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.asyncio import serve
from hypercorn.config import Config

from core.embedded_redis import free_port
from tests.conftest import Api, Tenant

# Imported by tests only (an initial conftest is loaded before the settings are):
# models.channels, resolvers.workspaces, services.push.
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"

ERRORS = "userErrors { field code message }"
SESSION = (
    "mutation($i: StartContactSessionInput!) { "
    f"startContactSession(input: $i) {{ token contact {{ id }} {ERRORS} }} }}"
)
REGISTER = (
    "mutation($i: RegisterDeviceInput!) { registerDevice(input: $i) { "
    f"device {{ id platform appId locale }} {ERRORS} }} }}"
)
SET_APNS = (
    "mutation($i: SetApnsCredentialsInput!) { setApnsCredentials(input: $i) { pushSettings { "
    "apns { configured keyId teamId bundleId environment } fcm { configured projectId clientEmail } "
    f"showMessageText respectQuietHours }} {ERRORS} }} }}"
)
SET_FCM = (
    "mutation($i: SetFcmCredentialsInput!) { setFcmCredentials(input: $i) { pushSettings { "
    f"apns {{ configured }} fcm {{ configured projectId clientEmail }} }} {ERRORS} }} }}"
)
SET_OPTIONS = (
    "mutation($i: SetPushOptionsInput!) { setPushOptions(input: $i) { "
    f"pushSettings {{ showMessageText respectQuietHours }} {ERRORS} }} }}"
)
BUNDLE = "com.example.parleyapp"
KEY_ID, TEAM_ID = "ABC123DEFG", "TEAM123456"
PROJECT = "parley-push-test"


def apple_key() -> tuple[str, ec.EllipticCurvePublicKey]:
    """A .p8 key as Apple issues them (P-256, PKCS#8 PEM) and its public half."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode(), key.public_key()


def google_account(token_uri: str) -> tuple[str, rsa.RSAPublicKey]:
    """A service account key file as the Firebase console downloads it, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "kid-1",
        "private_key": pem.decode(),
        "client_email": f"firebase-adminsdk@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return json.dumps(account), key.public_key()


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    http_version: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Provider:
    """One provider's side: requests received and answers to give (then 200s)."""

    requests: list[Request] = field(default_factory=list)
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *answers: int | tuple[int, dict[str, Any]]) -> None:
        with self.lock:
            self.answers.extend(a if isinstance(a, tuple) else (a, {}) for a in answers)

    def next_answer(self) -> tuple[int, dict[str, Any]]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, {})

    async def wait_for(self, count: int, timeout: float = 10) -> list[Request]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            await asyncio.sleep(0.01)


class Providers:
    """APNs, FCM and Google's token endpoint in one ASGI app on one loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.apns, self.fcm, self.oauth = Provider(), Provider(), Provider()
        self.apple_pem, self.apple_public = apple_key()
        self.account_json, self.google_public = google_account(f"{self.url}/token")
        self.issued: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- the checks each provider makes ----------------------------------------------------

    def _apns(self, request: Request) -> tuple[int, dict[str, Any]]:
        """APNs: POST /3/device/<token> over HTTP/2, a bearer JWT (ES256, kid, iss) and the headers."""
        if request.http_version != "2" or request.method != "POST" or not request.path.startswith("/3/device/"):
            return 400, {"reason": "BadPath"}
        auth = request.headers.get("authorization", "")
        try:
            header = jwt.get_unverified_header(auth.removeprefix("bearer "))
            claims = jwt.decode(auth.removeprefix("bearer "), self.apple_public, algorithms=["ES256"])  # type: ignore[arg-type]
        except jwt.PyJWTError:
            return 403, {"reason": "InvalidProviderToken"}
        if header.get("kid") != KEY_ID or claims.get("iss") != TEAM_ID or abs(time.time() - claims["iat"]) > 3600:
            return 403, {"reason": "InvalidProviderToken"}
        if request.headers.get("apns-topic") != BUNDLE:
            return 400, {"reason": "BadTopic"}
        if request.headers.get("apns-push-type") != "alert" or not request.headers.get("apns-collapse-id"):
            return 400, {"reason": "InvalidPushType"}
        return self.apns.next_answer()

    def _oauth(self, request: Request) -> tuple[int, dict[str, Any]]:
        """Google's token endpoint: a JWT-bearer grant signed (RS256) by the service account."""
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.google_public,
                algorithms=["RS256"],  # type: ignore[arg-type]
                audience=f"{self.url}/token",
            )
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant"}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or claims.get("scope") != FCM_SCOPE:
            return 400, {"error": "invalid_grant"}
        if claims.get("iss") != json.loads(self.account_json)["client_email"]:
            return 400, {"error": "invalid_grant"}
        status, body = self.oauth.next_answer()
        if status != 200:
            return status, body
        token = f"ya29.test-{len(self.issued) + 1}"
        self.issued.append(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _fcm(self, request: Request) -> tuple[int, dict[str, Any]]:
        """FCM HTTP v1: POST /v1/projects/<id>/messages:send with a token the endpoint issued."""
        if request.method != "POST" or request.path != f"/v1/projects/{PROJECT}/messages:send":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "bad path"}}
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "bad token"}}
        message = request.json().get("message", {})
        if not message.get("token") or "data" not in message:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "no token"}}
        status, body = self.fcm.next_answer()
        return status, body or {"name": f"projects/{PROJECT}/messages/0:{len(self.fcm.requests)}"}

    # -- the server --------------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        request = Request(
            scope["method"],
            scope["path"],
            scope["http_version"],
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        if request.path.startswith("/3/device/"):
            provider, check = self.apns, self._apns
        elif request.path == "/token":
            provider, check = self.oauth, self._oauth
        else:
            provider, check = self.fcm, self._fcm
        status, answer = check(request)
        with provider.lock:
            provider.requests.append(request)
        headers = [(b"content-type", b"application/json")]
        if status == 200 and provider is self.apns:
            headers.append((b"apns-id", b"6E1F2C1A-0000-4000-8000-000000000001"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": json.dumps(answer).encode() if answer or status != 200 else b""}
        )

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        try:
            self._loop.run_until_complete(serve(self._app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        finally:
            self._loop.close()

    def __enter__(self) -> Providers:
        import socket

        self._thread.start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Providers]:
    from core.config import settings
    from services.push import forget_tokens

    forget_tokens()
    with Providers() as running:
        for name in ("push_apns_url", "push_apns_sandbox_url", "push_fcm_url"):
            monkeypatch.setattr(settings, name, running.url)
        monkeypatch.setattr(settings, "push_fcm_token_url", f"{running.url}/token")
        monkeypatch.setattr(settings, "push_retry_base_seconds", 0.01)
        yield running
    forget_tokens()


# -- a mobile app's contact -------------------------------------------------------------------


@dataclass
class App:
    """A mobile SDK channel of a tenant, with both providers' credentials set."""

    tenant: Tenant
    channel: Any
    channel_id: str


async def ok(api: Api, doc: str, variables: dict[str, Any], token: str, field_name: str) -> dict[str, Any]:
    payload = (await api(doc, variables, token=token))[field_name]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload  # type: ignore[no-any-return]


async def sdk_channel(tenant: Tenant) -> App:
    from strawberry import relay

    from models.channels import ChannelKind
    from resolvers.workspaces import create_channel

    channel = await create_channel(
        tenant.workspace.id, ChannelKind.MOBILE_SDK, "iOS and Android app", identity_verification=False
    )
    return App(tenant, channel, str(relay.GlobalID("Channel", str(channel.id))))


async def configured(tenant: Tenant, providers: Providers) -> App:
    app = await sdk_channel(tenant)
    apns = {
        "channelId": app.channel_id,
        "privateKey": providers.apple_pem,
        "keyId": KEY_ID,
        "teamId": TEAM_ID,
        "bundleId": BUNDLE,
        "environment": "SANDBOX",
    }
    await ok(tenant.api, SET_APNS, {"i": apns}, tenant.owner_token, "setApnsCredentials")
    await ok(
        tenant.api,
        SET_FCM,
        {"i": {"channelId": app.channel_id, "serviceAccountJson": providers.account_json}},
        tenant.owner_token,
        "setFcmCredentials",
    )
    return app


async def session(app: App, **identity: Any) -> tuple[str, str]:
    """A contact session on the app's channel: (token, contact id)."""
    payload = await ok(
        app.tenant.api, SESSION, {"i": {"channelKey": app.channel.public_key, **identity}}, "", "startContactSession"
    )
    return payload["token"], payload["contact"]["id"]


async def register(
    app: App, token: str, platform: str, device_token: str, locale: str | None = "en-GB"
) -> dict[str, Any]:
    variables = {"i": {"platform": platform, "token": device_token, "appId": BUNDLE, "locale": locale}}
    return (await ok(app.tenant.api, REGISTER, variables, token, "registerDevice"))["device"]  # type: ignore[no-any-return]


@pytest.fixture
async def empty_queue(app: Any) -> AsyncIterator[None]:
    from core import keys

    await app.state.jobs.delete(keys.arq_queue())
    yield
