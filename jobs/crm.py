"""`crm_lookup(conversation_id)`: ask the channel's CRM about a new conversation's contact
(DESIGN.md, "CRM sync"; issue 29 item 4).

Queued after the commit that opens a conversation on a channel with a `crm_lookup_url`,
so the conversation never waits for it. The job POSTs the contact's trusted identifiers
through core/outbound.py (public addresses only, one deadline, a bounded answer), signed
with the channel's CRM secret as every webhook is (core/signing.py):

    POST <crmLookupUrl>   X-Parley-Signature: t=…,v1=…   X-Parley-Event-Type: crm.lookup
    {"type": "crm.lookup", "workspaceId": …, "channelId": …, "conversationId": …,
     "contact": {"id": …, "externalId": …, "email": …, "phone": …}}

and takes from the answer (`{"attributes": {"plan": "gold"}}`, domain/crm.py) the values
of CRM-managed attributes that fit their type; anything else is ignored, an answer that
is not such an object is refused whole. A 404 or 204 means the CRM does not know the contact.
Connection errors, timeouts, 408/425/429 and 5xx retry with backoff, CRM_LOOKUP_TRIES in
all. The answer is cached in Redis for CRM_LOOKUP_CACHE_SECONDS: the contact's next
conversations on the channel reuse it without a request.

Only values a trusted writer set are sent (an anonymous visitor's claimed e-mail would
otherwise pull a stranger's CRM record onto it): the external id unless a widget session
merely claimed it, the e-mail and phone unless a session supplied them. A contact with
none of them is not looked up.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

from arq import Retry

from core import keys, outbound
from core.config import settings
from core.events import Outbox, atomic
from core.outbound import OutboundError
from core.scoping import encode_global_id
from core.sealed import SealBroken, unseal
from core.signing import signed_headers
from domain.crm import MAX_ANSWER_BYTES, AnswerRefused, clean_values, parse_answer
from models.channels import Channel
from models.contacts import AttributeDefinition, AttributeSource, ChangeKind, Contact, IdentitySource, SessionField
from models.conversations import Conversation
from services.contacts import apply_attributes, record_change

log = logging.getLogger("parley.jobs.crm")

EVENT_TYPE = "crm.lookup"
RETRYABLE_STATUS = frozenset({408, 425, 429})


def trusted_identifiers(contact: Contact) -> dict[str, str]:
    """The identifiers of `contact` that no unverified session supplied."""
    found: dict[str, str] = {}
    if contact.external_id and contact.identity_source is not IdentitySource.SESSION:
        found["externalId"] = contact.external_id
    if contact.identity_source is IdentitySource.TRUSTED:
        if contact.email and not contact.session_fields & SessionField.EMAIL:
            found["email"] = contact.email
        if contact.phone and not contact.session_fields & SessionField.PHONE:
            found["phone"] = contact.phone
    return found


async def crm_lookup(ctx: dict[str, Any], conversation_id: int) -> str:
    """One try at the lookup for a conversation; returns what happened (the job's result)."""
    conversation = await Conversation.get_or_none(id=conversation_id)
    if conversation is None:
        return "no conversation"
    channel = await Channel.get_or_none(id=conversation.channel_id)
    if channel is None or not channel.crm_lookup_url or not channel.crm_lookup_secret_sealed:
        return "no lookup"
    contact = await Contact.get_or_none(id=conversation.contact_id)
    if contact is None or contact.blocked:
        return "no contact"
    identifiers = trusted_identifiers(contact)
    if not identifiers:
        return "nothing to look up"
    cache_key = keys.crm_answer(channel.id, contact.id)
    cached = await ctx["redis"].get(cache_key)
    if cached is not None:
        attributes = json.loads(cached)
        outcome = "cached"
    else:
        try:
            attributes = await _ask(ctx, channel, conversation, contact, identifiers)
        except AnswerRefused as exc:
            log.warning("channel %s: CRM answer refused: %s", channel.id, exc)
            return "refused"
        except _GaveUp as exc:
            log.warning("channel %s: CRM lookup failed: %s", channel.id, exc)
            return "failed"
        await ctx["redis"].set(cache_key, json.dumps(attributes), ex=settings.crm_lookup_cache_seconds)
        outcome = "looked up"
    return outcome if await _fill(ctx, contact, attributes) else f"{outcome}, unchanged"


class _GaveUp(Exception):
    """No usable answer, and no more tries."""


async def _ask(
    ctx: dict[str, Any], channel: Channel, conversation: Conversation, contact: Contact, identifiers: dict[str, str]
) -> dict[str, Any]:
    """The CRM's attributes for the contact ({} when it does not know it)."""
    assert channel.crm_lookup_url is not None and channel.crm_lookup_secret_sealed is not None
    try:
        secret = unseal(channel.crm_lookup_secret_sealed)
    except SealBroken as exc:
        raise _GaveUp("the CRM secret cannot be read: set it again") from exc
    payload = {
        "type": EVENT_TYPE,
        "workspaceId": encode_global_id("Workspace", channel.workspace_id),
        "channelId": encode_global_id("Channel", channel.id),
        "conversationId": encode_global_id("Conversation", conversation.id),
        "contact": {"id": encode_global_id("Contact", contact.id), **identifiers},
    }
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {**signed_headers(secret, body), "x-parley-event-type": EVENT_TYPE}
    job_try = int(ctx.get("job_try", 1))
    try:
        response = await outbound.post(
            channel.crm_lookup_url,
            content=body,
            headers=headers,
            timeout=settings.crm_lookup_timeout_seconds,
            max_bytes=MAX_ANSWER_BYTES + 1,
        )
    except OutboundError as exc:
        _retry_or_give_up(job_try, exc.reason, retryable=exc.retryable)
    if response.status in (204, 404):
        return {}
    if not response.ok:
        retryable = response.status in RETRYABLE_STATUS or response.status >= 500
        _retry_or_give_up(job_try, response.summary, retryable=retryable, retry_after=response.retry_after)
    return parse_answer(response.body, truncated=len(response.body) > MAX_ANSWER_BYTES)


def _retry_or_give_up(job_try: int, reason: str, *, retryable: bool, retry_after: float | None = None) -> NoReturn:
    if not retryable or job_try >= settings.crm_lookup_tries:
        raise _GaveUp(f"{reason} (try {job_try})")
    delay = outbound.retry_delay(settings.crm_lookup_retry_base_seconds, job_try, retry_after, cap=600)
    raise Retry(defer=delay)


async def _fill(ctx: dict[str, Any], contact: Contact, attributes: dict[str, Any]) -> bool:
    """Write the CRM-managed values that fit their definitions (as they are now); True
    when the contact changed."""
    definitions = {
        d.key: (d.type.value, list(d.options or []))
        for d in await AttributeDefinition.filter(
            workspace_id=contact.workspace_id,
            key__in=list(attributes),
            crm_managed=True,
            source=AttributeSource.CUSTOM,
        )
    }
    answer = clean_values(attributes, definitions)
    if answer.ignored:
        log.info(
            "contact %s: %d CRM attributes ignored (not CRM-managed or of the wrong type)", contact.id, answer.ignored
        )
    if not answer.values:
        return False
    outbox = Outbox(ctx.get("hub"), ctx.get("redis"))
    async with atomic(outbox):
        fresh = await Contact.select_for_update().get_or_none(id=contact.id)
        if fresh is None:
            return False
        before = dict(fresh.attributes or {})
        apply_attributes(fresh, answer.values)
        if fresh.attributes == before:
            return False
        await fresh.save(update_fields=["attributes", "updated_at"])
        await record_change(outbox, fresh, ChangeKind.UPDATED)
    return True
