"""The live inbox's jobs: e-mail the agents a note @mentions who are offline, and prune the
inbox feed's log (services/inbox.py)."""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from core import keys
from core.mail import Mail, MailError, MailNotConfigured, send_mail
from core.presence import online_ids
from core.scoping import encode_global_id
from jobs.sending import DELIVERY_TRIES, NOTIFIED_TTL, backoff
from models.conversations import ConversationNote
from models.workspaces import Agent, Workspace
from services import inbox

log = logging.getLogger("parley.jobs.inbox")


async def notify_mentions(ctx: dict[str, Any], note_id: int) -> list[int]:
    """E-mail each agent the note mentions (but its author) who is offline now, once; the
    ids of the agents e-mailed."""
    note = await ConversationNote.get_or_none(id=note_id)
    if note is None:
        return []
    online = await online_ids(ctx["redis"], note.workspace_id, "agent")
    wanted = [pk for pk in note.mentioned_agent_ids if pk != note.agent_id and pk not in online]
    if not wanted:
        return []
    agents = await Agent.filter(workspace_id=note.workspace_id, id__in=wanted, deactivated_at__isnull=True)
    workspace = await Workspace.get(id=note.workspace_id)
    author = await Agent.filter(id=note.agent_id).first().values_list("name", flat=True) if note.agent_id else None
    conversation_gid = encode_global_id("Conversation", note.conversation_id)
    sent: list[int] = []
    for agent in agents:
        key = keys.mention_notified(note.id, agent.id)
        if await ctx["redis"].exists(key):
            continue
        text = (
            f"{author or 'An agent'} mentioned you in a private note:\n\n{note.body}\n\n"
            f"Conversation {conversation_gid} in {workspace.name}.\n"
        )
        try:
            await send_mail(
                Mail(
                    to=[agent.email],
                    subject=f"{author or 'An agent'} mentioned you in {workspace.name}",
                    text=text,
                    headers={"Auto-Submitted": "auto-generated", "X-Parley-Conversation": conversation_gid},
                )
            )
        except (MailNotConfigured, ValueError) as exc:
            log.warning("no mention e-mail for note %s: %s", note.id, exc)
            return sent
        except MailError as exc:
            job_try = int(ctx.get("job_try", 1))
            if job_try >= DELIVERY_TRIES:
                log.error("mention e-mail for note %s lost: %s", note.id, exc)
                return sent
            raise Retry(defer=backoff(job_try)) from exc
        await ctx["redis"].set(key, "1", ex=NOTIFIED_TTL)
        sent.append(agent.id)
    return sent


async def prune_inbox_events(ctx: dict[str, Any]) -> int:
    pruned = await inbox.prune()
    if pruned:
        log.info("pruned %d inbox feed events", pruned)
    return pruned
