"""What an operator does from the command line (`parley create-workspace`, `create-agent`,
`create-api-key`, `reset-password`): the API's rules on e-mails, passwords, roles and
scopes, without a request or a principal. Each raises OperatorError with a message for a
person at a terminal."""

from __future__ import annotations

from core.auth import hash_password, new_api_key
from core.config import settings
from core.events import Outbox
from core.hub import Hub
from core.permissions import API_KEY_SCOPES
from domain import contact_fields as cf
from models.workspaces import Agent, ApiKey, Role, Workspace
from resolvers import auth
from resolvers.workspaces import MIN_PASSWORD, Bootstrap
from resolvers.workspaces import create_workspace as bootstrap_workspace

MAX_PASSWORD = 1024


class OperatorError(Exception):
    pass


def _email(value: str) -> str:
    try:
        return cf.normalize_email(value)
    except ValueError as exc:
        raise OperatorError(f"e-mail {value!r}: {exc}") from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise OperatorError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise OperatorError(f"a password has at most {MAX_PASSWORD} characters")


def _name(value: str, what: str) -> str:
    if not value.strip() or len(value) > 120:
        raise OperatorError(f"{what} has 1 to 120 characters")
    return value.strip()


async def workspace_by_slug(slug: str) -> Workspace:
    workspace = await Workspace.get_or_none(slug=slug)
    if workspace is None:
        raise OperatorError(f"no workspace {slug!r} (`parley create-workspace` prints a new one's slug)")
    return workspace


async def create_workspace(name: str, owner_email: str, password: str, owner_name: str) -> Bootstrap:
    """A workspace with its owner, a Default API key (every scope), a web widget channel."""
    email = _email(owner_email)
    _check_password(password)
    return await bootstrap_workspace(
        _name(name, "a workspace name"), email, password, owner_name=_name(owner_name, "a name")
    )


async def create_agent(slug: str, email: str, name: str, password: str, role: Role) -> Agent:
    workspace = await workspace_by_slug(slug)
    email = _email(email)
    _check_password(password)
    if await Agent.filter(workspace_id=workspace.id, email=email).exists():
        raise OperatorError(f"workspace {slug!r} already has an agent {email}")
    return await Agent.create(
        workspace_id=workspace.id,
        email=email,
        name=_name(name, "a name"),
        password_hash=await hash_password(password),
        role=role,
    )


async def create_api_key(slug: str, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """The key row and its secret, which is kept nowhere (only a hash is)."""
    workspace = await workspace_by_slug(slug)
    unknown = sorted(set(scopes) - API_KEY_SCOPES)
    if unknown:
        raise OperatorError(f"unknown scope {', '.join(unknown)}; scopes are {', '.join(sorted(API_KEY_SCOPES))}")
    if not scopes:
        raise OperatorError("give at least one --scope (or --all-scopes)")
    key = new_api_key()
    row = await ApiKey.create(
        workspace_id=workspace.id,
        name=_name(name, "a key name"),
        prefix=key.prefix,
        key_hash=key.key_hash,
        scopes=sorted(set(scopes)),
    )
    return row, key.plaintext


async def reset_password(email: str, password: str, slug: str | None = None) -> Agent:
    email = _email(email)
    agents = Agent.filter(email=email)
    if slug is not None:
        agents = agents.filter(workspace_id=(await workspace_by_slug(slug)).id)
    found = await agents.limit(2)
    if not found:
        raise OperatorError(f"no agent {email}" + (f" in workspace {slug!r}" if slug else ""))
    if len(found) > 1:
        raise OperatorError(f"{email} is an agent of several workspaces: name one with --workspace")
    _check_password(password)
    # Like changePassword: every token the agent holds stops working; with REDIS_URL set,
    # running API processes hear it at once (else within their principal cache's seconds).
    hub = Hub(settings.redis_url) if settings.redis_url else None
    try:
        await auth.set_password(Outbox(hub), found[0].id, password)
    finally:
        if hub is not None:
            await hub.redis.aclose()
    return found[0]
