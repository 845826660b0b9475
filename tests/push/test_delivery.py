"""Pushing agents' replies through APNs (HTTP/2) and FCM (HTTP/1.1) stand-ins on loopback:
what each request carries, retries, token removal, the collapse, the grace period, quiet
hours, no push while the app's socket is live, and the delivery log admins read."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from arq import Retry

from core import presence
from core.config import settings
from jobs.push import deliver_push, push_conversation
from models.contacts import Contact
from models.push import Device, PushConfig
from tests.conftest import Tenant, pk, start_server, start_worker, stop_process
from tests.push.conftest import BUNDLE, PROJECT, App, Providers, configured, ok, register, session
from tests.realtime.wsclient import GraphQLWs

APNS_TOKEN = "a1" * 32
FCM_TOKEN = "fcm-token_" + "x" * 40 + ":APA91b"
START = (
    "mutation($i: StartConversationInput!) { startConversation(input: $i) { conversation { id } userErrors { code } } }"
)
SEND = "mutation($i: SendMessageInput!) { sendMessage(input: $i) { message { id } userErrors { field code message } } }"
LOG = """query($c: ID) { pushAttempts(channelId: $c, first: 20) { totalCount edges { node {
  platform tokenHint attempt outcome statusCode error conversationId messageId contactId
} } } }"""
MY_MESSAGES = "subscription { myMessages { message { id body } } }"


def ctx(app: Any, job_try: int = 1) -> dict[str, Any]:
    return {"redis": app.state.jobs, "hub": app.state.hub, "job_try": job_try}


async def conversation_with_reply(sdk: App, contact_token: str, text: str = "Try logging in again") -> tuple[str, int]:
    started = await ok(sdk.tenant.api, START, {"i": {"body": "My order is late"}}, contact_token, "startConversation")
    conversation_id = started["conversation"]["id"]
    message_id = await reply(sdk.tenant, conversation_id, text)
    return conversation_id, message_id


async def reply(tenant: Tenant, conversation_id: str, text: str) -> int:
    payload = await ok(
        tenant.api, SEND, {"i": {"conversationId": conversation_id, "body": text}}, tenant.owner_token, "sendMessage"
    )
    return pk(payload["message"]["id"])


async def run_deliveries(app: Any, device_id: int, message_id: int, tries: int = 10) -> list[str]:
    """deliver_push as arq runs it: again after each Retry, with the try count."""
    outcomes = []
    for job_try in range(1, tries + 1):
        try:
            outcomes.append(await deliver_push(ctx(app, job_try), device_id, message_id))
            return outcomes
        except Retry:
            outcomes.append("retry")
    return outcomes


async def delivery_log(tenant: Tenant, channel_id: str | None = None) -> list[dict[str, Any]]:
    data = await tenant.api(LOG, {"c": channel_id}, token=tenant.owner_token)
    return [e["node"] for e in data["pushAttempts"]["edges"]]


async def test_an_apns_push_is_sent_over_http2_as_apple_documents(
    tenant: Tenant, app: Any, providers: Providers, empty_queue: None
) -> None:
    sdk = await configured(tenant, providers)
    token, contact_gid = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN.upper())
    conversation_id, message_id = await conversation_with_reply(sdk, token, "Your parcel left the depot")

    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"
    assert await run_deliveries(app, pk(device["id"]), message_id) == ["sent"]
    [request] = await providers.apns.wait_for(1)
    assert request.http_version == "2" and request.method == "POST"
    assert request.path == f"/3/device/{APNS_TOKEN}"  # the hex token, as the phone reported it (lowercase)
    assert request.headers["apns-topic"] == BUNDLE
    assert request.headers["apns-push-type"] == "alert" and request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == conversation_id
    assert int(request.headers["apns-expiration"]) > time.time()
    # The stand-in verified the bearer JWT with the .p8 key's public half (else 403).
    body = request.json()
    assert body["conversationId"] == conversation_id and pk(body["messageId"]) == message_id
    assert body["aps"]["alert"] == {
        "title": "Acme",
        "body": "You have a new reply.",
    }  # no text unless the channel allows it
    assert body["aps"]["badge"] == 1 and body["aps"]["thread-id"] == conversation_id
    assert "parcel" not in request.body.decode()

    [line] = await delivery_log(tenant, sdk.channel_id)
    assert line["outcome"] == "SENT" and line["statusCode"] == 200 and line["platform"] == "IOS"
    assert (
        line["tokenHint"] == APNS_TOKEN[-8:]
        and line["contactId"] == contact_gid
        and pk(line["messageId"]) == message_id
    )
    # Pushed once: the same reply is not pushed again by a later run.
    assert await push_conversation(ctx(app), pk(conversation_id)) == "pushed already"


async def test_the_text_is_sent_only_when_the_channel_allows_it(tenant: Tenant, app: Any, providers: Providers) -> None:
    sdk = await configured(tenant, providers)
    await ok(
        tenant.api,
        "mutation($i: SetPushOptionsInput!) { setPushOptions(input: $i) { userErrors { code } } }",
        {"i": {"channelId": sdk.channel_id, "showMessageText": True}},
        tenant.owner_token,
        "setPushOptions",
    )
    token, _ = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token, "Your parcel left the depot")
    await push_conversation(ctx(app), pk(conversation_id))
    await run_deliveries(app, pk(device["id"]), message_id)
    [request] = await providers.apns.wait_for(1)
    assert request.json()["aps"]["alert"]["body"] == "Your parcel left the depot"


async def test_apns_429_and_500_are_retried_with_backoff_then_sent(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    providers.apns.answer((500, {"reason": "InternalServerError"}), (429, {"reason": "TooManyRequests"}))
    await push_conversation(ctx(app), pk(conversation_id))
    assert await run_deliveries(app, pk(device["id"]), message_id) == ["retry", "retry", "sent"]
    assert len(await providers.apns.wait_for(3)) == 3
    log = await delivery_log(tenant, sdk.channel_id)
    assert [(a["attempt"], a["outcome"], a["statusCode"], a["error"]) for a in reversed(log)] == [
        (1, "RETRYING", 500, "InternalServerError"),
        (2, "RETRYING", 429, "TooManyRequests"),
        (3, "SENT", 200, None),
    ]


async def test_a_push_that_keeps_failing_gives_up(
    tenant: Tenant, app: Any, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "push_max_attempts", 3)
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    providers.apns.answer(503, 503, 503, 503)
    await push_conversation(ctx(app), pk(conversation_id))
    assert await run_deliveries(app, pk(device["id"]), message_id) == ["retry", "retry", "failed"]
    assert [a["outcome"] for a in await delivery_log(tenant)] == ["FAILED", "RETRYING", "RETRYING"]
    assert await Device.exists(id=pk(device["id"]))  # a provider outage is no reason to forget the phone


async def test_apns_410_unregistered_removes_the_device(tenant: Tenant, app: Any, providers: Providers) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    gone = await register(sdk, token, "IOS", APNS_TOKEN)
    kept = await register(sdk, token, "IOS", "b2" * 32)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    providers.apns.answer((410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}))
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 2"
    assert await run_deliveries(app, pk(gone["id"]), message_id) == ["token_removed"]
    assert await run_deliveries(app, pk(kept["id"]), message_id) == ["sent"]
    assert not await Device.exists(id=pk(gone["id"])) and await Device.exists(id=pk(kept["id"]))
    outcomes = {a["tokenHint"]: (a["outcome"], a["statusCode"], a["error"]) for a in await delivery_log(tenant)}
    assert outcomes == {APNS_TOKEN[-8:]: ("TOKEN_REMOVED", 410, "Unregistered"), ("b2" * 32)[-8:]: ("SENT", 200, None)}


async def test_fcm_gets_an_oauth_token_from_the_service_account_then_sends(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "ANDROID", FCM_TOKEN, locale="pt_BR")
    conversation_id, first = await conversation_with_reply(sdk, token)
    await push_conversation(ctx(app), pk(conversation_id))
    assert await run_deliveries(app, pk(device["id"]), first) == ["sent"]
    [grant] = await providers.oauth.wait_for(1)
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    [request] = await providers.fcm.wait_for(1)
    assert request.http_version == "1.1" and request.path == f"/v1/projects/{PROJECT}/messages:send"
    assert request.headers["authorization"] == f"Bearer {providers.issued[0]}"
    message = request.json()["message"]
    assert message["token"] == FCM_TOKEN
    assert message["data"] == {
        "conversationId": conversation_id,
        "messageId": message["data"]["messageId"],
        "badge": "1",
    }
    assert pk(message["data"]["messageId"]) == first
    assert (
        message["android"]["collapse_key"] == conversation_id
        and message["android"]["notification"]["tag"] == conversation_id
    )
    assert message["notification"]["body"] == "You have a new reply."

    # The access token is kept: the next push asks the token endpoint nothing.
    second = await reply(tenant, conversation_id, "Anything else?")
    await push_conversation(ctx(app), pk(conversation_id))
    assert await run_deliveries(app, pk(device["id"]), second) == ["sent"]
    assert len(await providers.fcm.wait_for(2)) == 2 and len(providers.oauth.requests) == 1


async def test_fcm_unregistered_removes_the_device_and_500_is_retried(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    retried = await register(sdk, token, "ANDROID", FCM_TOKEN)
    gone = await register(sdk, token, "ANDROID", "other-fcm-token-" + "y" * 30)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    unregistered = {
        "error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }
    }
    providers.fcm.answer((500, {"error": {"code": 500, "status": "INTERNAL", "message": "oops"}}))
    assert await run_deliveries(app, pk(retried["id"]), message_id) == ["retry", "sent"]
    providers.fcm.answer((404, unregistered))
    assert await run_deliveries(app, pk(gone["id"]), message_id) == ["token_removed"]
    assert not await Device.exists(id=pk(gone["id"])) and await Device.exists(id=pk(retried["id"]))
    log = [(a["outcome"], a["statusCode"], a["error"]) for a in reversed(await delivery_log(tenant))]
    assert log == [("RETRYING", 500, "INTERNAL"), ("SENT", 200, None), ("TOKEN_REMOVED", 404, "UNREGISTERED")]


async def test_replies_within_the_grace_period_collapse_into_one_push_about_the_newest(
    tenant: Tenant, app: Any, providers: Providers, empty_queue: None
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, _ = await conversation_with_reply(sdk, token, "Looking into it")
    newest = await reply(tenant, conversation_id, "Found it: refund on its way")
    queued = [job for job in await app.state.jobs.queued_jobs() if job.function == "push_conversation"]
    assert len(queued) == 1  # one job for the conversation, whatever the number of replies
    [job] = queued
    assert job.args == (pk(conversation_id),)
    # It waits the grace period before it runs.
    assert job.score / 1000 - time.time() > settings.push_grace_seconds - 5
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"
    deliveries = [j for j in await app.state.jobs.queued_jobs() if j.function == "deliver_push"]
    assert [j.args for j in deliveries] == [(pk(device["id"]), newest)]
    assert await run_deliveries(app, pk(device["id"]), newest) == ["sent"]
    [request] = await providers.apns.wait_for(1)
    assert pk(request.json()["messageId"]) == newest


async def test_a_reply_the_contact_read_meanwhile_is_not_pushed(tenant: Tenant, app: Any, providers: Providers) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, _ = await conversation_with_reply(sdk, token)
    await ok(
        tenant.api,
        "mutation($i: ConversationIdInput!) { markConversationRead(input: $i) { userErrors { code } } }",
        {"i": {"id": conversation_id}},
        token,
        "markConversationRead",
    )
    assert await push_conversation(ctx(app), pk(conversation_id)) == "read already"
    assert providers.apns.requests == []


async def test_quiet_hours_hold_a_push_until_eight_in_the_contacts_time_zone(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    token, contact_gid = await session(sdk)
    await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, _ = await conversation_with_reply(sdk, token)
    # A zone where it is 02:xx now.
    zone = next(
        f"Etc/GMT{-o:+d}" if o else "UTC"
        for o in range(-12, 15)
        if datetime.now(ZoneInfo(f"Etc/GMT{-o:+d}" if o else "UTC")).hour in (2, 3)
    )
    await Contact.filter(id=pk(contact_gid)).update(time_zone=zone)
    with pytest.raises(Retry) as held:
        await push_conversation(ctx(app), pk(conversation_id))
    wake = datetime.now(UTC) + timedelta(seconds=held.value.defer_score / 1000)  # type: ignore[operator]
    assert wake.astimezone(ZoneInfo(zone)).hour == 8 or (
        wake.astimezone(ZoneInfo(zone)).hour == 7 and wake.minute == 59
    )
    assert providers.apns.requests == []
    # A channel that does not respect quiet hours pushes at once.
    await PushConfig.filter(channel_id=sdk.channel.id).update(respect_quiet_hours=False)
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"


async def test_no_push_while_the_apps_socket_is_live(
    tenant: Tenant, app: Any, providers: Providers, tmp_path: Path
) -> None:
    sdk = await configured(tenant, providers)
    token, contact_gid = await session(sdk)
    await register(sdk, token, "IOS", APNS_TOKEN)
    started = await ok(tenant.api, START, {"i": {"body": "Hello?"}}, token, "startConversation")
    conversation_id = started["conversation"]["id"]
    redis = app.state.hub.redis

    async def online() -> bool:
        return pk(contact_gid) in await presence.online_ids(redis, tenant.workspace.id, "contact")

    server = start_server(tmp_path)
    try:
        async with GraphQLWs.open(server.ws_url, token) as ws:
            sub = await ws.subscribe(MY_MESSAGES)
            deadline = time.monotonic() + 20
            while not await online():
                assert time.monotonic() < deadline, "the contact never came online"
                await asyncio.sleep(0.05)
            seen = await reply(tenant, conversation_id, "Hi, how can I help?")
            assert pk((await sub.next_data())["myMessages"]["message"]["id"]) == seen
            assert await push_conversation(ctx(app), pk(conversation_id)) == "contact online"
    finally:
        server.stop()
    assert providers.apns.requests == []
    # Seen live, so not pushed later either; the next reply, once the app is closed, is.
    await presence.forget(redis, tenant.workspace.id, "contact", pk(contact_gid))
    assert await push_conversation(ctx(app), pk(conversation_id)) == "pushed already"
    await reply(tenant, conversation_id, "Are you still there?")
    assert await push_conversation(ctx(app), pk(conversation_id)) == "queued 1"


async def test_a_device_that_moved_to_another_contact_gets_nothing_of_the_first(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    ada, _ = await session(sdk, externalId="ada")
    device = await register(sdk, ada, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, ada)
    await push_conversation(ctx(app), pk(conversation_id))
    bob, _ = await session(sdk, externalId="bob")
    assert (await register(sdk, bob, "IOS", APNS_TOKEN))["id"] == device["id"]  # Bob signed in on Ada's phone
    assert await run_deliveries(app, pk(device["id"]), message_id) == ["device moved"]
    assert providers.apns.requests == []


async def test_a_real_worker_pushes_after_the_grace_period(
    tenant: Tenant, app: Any, providers: Providers, tmp_path: Path, empty_queue: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "push_grace_seconds", 1)  # the API queues the job, deferred by it
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    await register(sdk, token, "ANDROID", FCM_TOKEN)
    env = {
        "PUSH_APNS_URL": providers.url,
        "PUSH_FCM_URL": providers.url,
        "PUSH_FCM_TOKEN_URL": f"{providers.url}/token",
        "PUSH_GRACE_SECONDS": "1",
        "PUSH_RETRY_BASE_SECONDS": "0.1",
    }
    worker = start_worker(tmp_path, env)
    try:
        providers.fcm.answer(429)
        started = time.monotonic()
        conversation_id, _ = await conversation_with_reply(sdk, token, "First")
        newest = await reply(tenant, conversation_id, "Second")
        first, second = await providers.fcm.wait_for(2, timeout=30)  # 429, then tried again
        assert time.monotonic() - started >= 1  # after the grace period
        await asyncio.sleep(1.5)
        assert len(providers.fcm.requests) == 2  # two replies, one notification: about the newest
        assert [pk(r.json()["message"]["data"]["messageId"]) for r in (first, second)] == [newest, newest]
    finally:
        stop_process(worker)
    assert [a["outcome"] for a in await delivery_log(tenant)] == ["SENT", "RETRYING"]


async def test_the_delivery_log_keeps_thirty_days(tenant: Tenant, app: Any, providers: Providers) -> None:
    from jobs.push import prune_push_attempts
    from models.push import PushAttempt

    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "IOS", APNS_TOKEN)
    conversation_id, message_id = await conversation_with_reply(sdk, token)
    providers.apns.answer(500)
    assert await run_deliveries(app, pk(device["id"]), message_id) == ["retry", "sent"]
    old = await PushAttempt.filter(workspace_id=tenant.workspace.id).order_by("id").first()
    assert old is not None
    await PushAttempt.filter(id=old.id).update(at=datetime.now(UTC) - timedelta(days=31))
    assert await prune_push_attempts({}) >= 1
    assert [a["outcome"] for a in await delivery_log(tenant)] == ["SENT"]


async def test_a_revoked_fcm_access_token_is_replaced_on_the_retry(
    tenant: Tenant, app: Any, providers: Providers
) -> None:
    sdk = await configured(tenant, providers)
    token, _ = await session(sdk)
    device = await register(sdk, token, "ANDROID", FCM_TOKEN)
    conversation_id, first = await conversation_with_reply(sdk, token)
    assert await run_deliveries(app, pk(device["id"]), first) == ["sent"]
    providers.issued.clear()  # Google no longer accepts the token Parley keeps
    second = await reply(tenant, conversation_id, "One more thing")
    assert await run_deliveries(app, pk(device["id"]), second) == ["retry", "sent"]
    assert len(providers.oauth.requests) == 2
    assert [(a["outcome"], a["statusCode"]) for a in await delivery_log(tenant)][:2] == [
        ("SENT", 200),
        ("RETRYING", 401),
    ]
