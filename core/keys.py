"""Every Redis key and pub/sub channel name, in one place.

contact_channel(3, 42)     # 'parley:ws:3:contact:42' with the default REDIS_PREFIX
"""

from __future__ import annotations

from core.config import settings


def _k(*parts: object) -> str:
    return ":".join([settings.redis_prefix, *map(str, parts)])


def contact_channel(workspace_id: int, contact_id: int) -> str:
    return _k("ws", workspace_id, "contact", contact_id)


def arq_queue() -> str:
    return _k("arq", "queue")


def segment_channel(workspace_id: int, segment_id: int) -> str:
    return _k("ws", workspace_id, "segment", segment_id)


def dirty_contacts(workspace_id: int) -> str:
    """Set of contact ids changed since the last segment re-evaluation."""
    return _k("ws", workspace_id, "segments", "dirty")


def dirty_conversations(workspace_id: int) -> str:
    """Set of contact ids whose conversations (only) changed since the last
    re-evaluation: only segments that count conversations need them."""
    return _k("ws", workspace_id, "segments", "dirty-conversations")


def dirty_refresh_pending(workspace_id: int) -> str:
    """Set while a debounced re-evaluation of the workspace is queued and not yet started:
    marks made meanwhile ride on it; the run deletes it before it reads the sets."""
    return _k("ws", workspace_id, "segments", "refresh-pending")


def conversation_channel(workspace_id: int, conversation_id: int) -> str:
    """`messageAdded`: the messages of one conversation."""
    return _k("ws", workspace_id, "conversation", conversation_id)


def inbox_channel(workspace_id: int) -> str:
    """`conversationEvents` and `unreadCount`: the workspace's inbox."""
    return _k("ws", workspace_id, "inbox")


def inbox_feed_channel(workspace_id: int) -> str:
    """`inboxEvents`: everything the workspace's inbox shows, one event each (services/inbox.py)."""
    return _k("ws", workspace_id, "inbox-feed")


def typing_throttle(workspace_id: int, conversation_id: int, who: str) -> str:
    """Set for TYPING_THROTTLE_SECONDS after a typing notice of `who` ('agent:7', 'contact:3')
    was published: notices meanwhile are not published again."""
    return _k("ws", workspace_id, "typing", conversation_id, who, "throttle")


def typing_active(workspace_id: int, conversation_id: int, who: str) -> str:
    """Set while `who` is shown typing in a conversation: its next message publishes a stop."""
    return _k("ws", workspace_id, "typing", conversation_id, who)


def mention_notified(note_id: int, agent_id: int) -> str:
    """Set once the e-mail about a note's mention of an agent went out; a retried job skips it."""
    return _k("notified", "note", note_id, agent_id)


def contact_messages_channel(workspace_id: int, contact_id: int) -> str:
    """`myMessages`: what a contact's widget or SDK receives."""
    return _k("ws", workspace_id, "contact", contact_id, "messages")


def presence(workspace_id: int, kind: str) -> str:
    """Sorted set of agent (or contact) ids online, scored by when their presence expires."""
    return _k("ws", workspace_id, "presence", kind)


def routing_lock(workspace_id: int, team_id: int) -> str:
    """Held while routing picks an agent of a team: two picks at once cannot both see room."""
    return _k("ws", workspace_id, "routing", "lock", team_id)


def routing_turn(workspace_id: int, team_id: int) -> str:
    """The agent a team's round-robin assigned last."""
    return _k("ws", workspace_id, "routing", "turn", team_id)


def routing_offline(workspace_id: int) -> str:
    """Hash: agent id -> unix time the reassignment sweep first found them offline."""
    return _k("ws", workspace_id, "routing", "offline")


def job_channel(workspace_id: int, job_id: int) -> str:
    """`jobProgress`: status and progress of one job record (services/job_records.py)."""
    return _k("ws", workspace_id, "job", job_id)


def inbound_sender_lock(channel_id: int, sender_digest: str) -> str:
    """Held while one sender's inbound message on a channel is stored (resolvers/inbound.py)."""
    return _k("channel", channel_id, "inbound", sender_digest)


def inbound_signature(channel_id: int, digest: str) -> str:
    """Set while a signed inbound delivery without a provider message id could be replayed
    (its signature's window); holds the ids of the message it stored (resolvers/inbound.py)."""
    return _k("channel", channel_id, "inbound-signature", digest)


def notification_sent(message_id: int, kind: str) -> str:
    """Set once a notification e-mail about a message went out; a retried job skips it."""
    return _k("notified", message_id, kind)


def deliver_job(message_id: int) -> str:
    """The arq job id sending one message (arq job ids are global: prefixed like the rest)."""
    return f"{arq_queue()}:deliver:{message_id}"


def crm_lookup_job(conversation_id: int) -> str:
    """The arq job asking the CRM about a new conversation's contact: once per conversation."""
    return f"{arq_queue()}:crm:{conversation_id}"


def crm_answer(channel_id: int, contact_id: int) -> str:
    """A CRM's cached answer about a contact (its attribute values, as JSON)."""
    return _k("crm", channel_id, contact_id)


def wake_job(conversation_id: int, at: int) -> str:
    """The arq job id waking a snoozed conversation at unix time `at`."""
    return f"{arq_queue()}:wake:{conversation_id}:{at}"


def bulk_job(action_id: int, at: int) -> str:
    """The arq job id of a bulk action's run resumed by the sweep at unix time `at`."""
    return f"{arq_queue()}:bulk:{action_id}:{at}"


def campaign_job(campaign_id: int, at: int) -> str:
    """The arq job id of a later run of a campaign (quiet hours over, or resumed) at unix
    time `at`; its first run goes under services.job_records.arq_job_id of its job record."""
    return f"{arq_queue()}:campaign:{campaign_id}:{at}"


def push_job(conversation_id: int) -> str:
    """The arq job id of a conversation's next push notification: replies queued while it
    waits out its grace period ride on it (jobs/push.py)."""
    return f"{arq_queue()}:push:{conversation_id}"


def push_delivery_job(device_id: int, message_id: int) -> str:
    """The arq job id sending one notification to one device."""
    return f"{arq_queue()}:push-device:{device_id}:{message_id}"


def push_sent(conversation_id: int) -> str:
    """The newest reply of a conversation that was pushed (or seen live): not pushed again."""
    return _k("push", "sent", conversation_id)


def contact_proactive_channel(workspace_id: int, contact_id: int) -> str:
    """`proactiveMessages`: the proactive messages pushed to a contact's widget or SDK."""
    return _k("ws", workspace_id, "contact", contact_id, "proactive")


def proactive_changes() -> str:
    """Live proactive messages of some channels changed: every API process drops its
    compiled copy of them (resolvers/proactive.py)."""
    return _k("proactive", "changed")


def auth_changes() -> str:
    """A role, a grant, an API key or a contact changed: every API process drops the
    principals it cached for the subject the message names (core/principal_cache.py)."""
    return _k("auth", "changed")


def rate_limits() -> str:
    """Prefix of the `limits` library's counters (core/ratelimit.py)."""
    return _k("ratelimit")


def login_lockout(account: str) -> str:
    """Set while an account (a digest of its e-mail) is locked out of `login`; expires with the lockout."""
    return _k("ratelimit", "lockout", account)


def login_lockouts(account: str) -> str:
    """How many lockouts in a row an account has had: each lasts twice as long as the last."""
    return _k("ratelimit", "lockouts", account)


def persisted_query(sha256: str) -> str:
    """An automatic persisted query's document, by its SHA-256 (runtime/persisted.py)."""
    return _k("apq", sha256)


def persisted_queries() -> str:
    """Sorted set of the persisted queries' hashes by registration time: the oldest go
    first when there are more than PERSISTED_QUERY_MAX_DOCUMENTS."""
    return _k("apq", "index")
