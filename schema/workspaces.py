"""The workspace and its people: agents, teams, API keys, settings (channels: schema/channels.py)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from models import workspaces as m
from resolvers import workspaces as r
from schema.common import Connection, UserError, mutate, provided, to_connection

Role = strawberry.enum(m.Role, name="Role")
MatchingAttribute = strawberry.enum(m.MatchingAttribute, name="MatchingAttribute")


@strawberry.type
class Agent(relay.Node):
    id: relay.NodeID[int]
    name: str
    email: str
    role: Role  # type: ignore[valid-type]
    can_edit_contact_identity: bool
    time_zone: str
    deactivated_at: datetime | None = strawberry.field(
        description="Set while the agent is deactivated: it cannot log in, its tokens are refused."
    )
    routing_capacity: int = strawberry.field(
        description="Routing assigns the agent at most this many open conversations (0: none); setAgentCapacity."
    )

    @classmethod
    def from_model(cls, a: m.Agent) -> Agent:
        return cls(
            id=a.id,
            name=a.name,
            email=a.email,
            role=a.role,
            can_edit_contact_identity=a.can_edit_contact_identity,
            time_zone=a.time_zone,
            deactivated_at=a.deactivated_at,
            routing_capacity=a.routing_capacity,
        )


@strawberry.type
class Team(relay.Node):
    id: relay.NodeID[int]
    name: str

    @strawberry.field
    async def members(self, info: Info[Context, None]) -> list[Agent]:
        agents = await r.team_members(info.context, self.id)
        return [Agent.from_model(a) for a in agents]

    @classmethod
    def from_model(cls, t: m.Team) -> Team:
        return cls(id=t.id, name=t.name)


@strawberry.type
class ApiKey(relay.Node):
    id: relay.NodeID[int]
    name: str
    prefix: str = strawberry.field(description="The public part of the key, to recognise it.")
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, k: m.ApiKey) -> ApiKey:
        return cls(
            id=k.id,
            name=k.name,
            prefix=k.prefix,
            scopes=list(k.scopes),
            created_at=k.created_at,
            last_used_at=k.last_used_at,
            revoked_at=k.revoked_at,
        )


@strawberry.type
class Workspace(relay.Node):
    id: relay.NodeID[int]
    name: str
    slug: str
    time_zone: str
    matching_attribute: MatchingAttribute  # type: ignore[valid-type]
    matching_attribute_key: str | None
    agents_can_edit_crm_attributes: bool
    attribution_window_hours: int = strawberry.field(
        description="A contact's first reply this many hours or fewer after a campaign or proactive message "
        "is attributed to it."
    )

    @classmethod
    def from_model(cls, w: m.Workspace) -> Workspace:
        return cls(
            id=w.id,
            name=w.name,
            slug=w.slug,
            time_zone=w.time_zone,
            matching_attribute=w.matching_attribute,
            matching_attribute_key=w.matching_attribute_key,
            agents_can_edit_crm_attributes=w.agents_can_edit_crm_attributes,
            attribution_window_hours=w.attribution_window_hours,
        )


# -- inputs and payloads ---------------------------------------------------------------------


@strawberry.input
class UpdateWorkspaceInput:
    name: str | None = strawberry.UNSET
    time_zone: str | None = strawberry.UNSET
    matching_attribute: MatchingAttribute | None = strawberry.UNSET  # type: ignore[valid-type]
    matching_attribute_key: str | None = strawberry.UNSET
    agents_can_edit_crm_attributes: bool | None = strawberry.UNSET
    attribution_window_hours: int | None = strawberry.UNSET


@strawberry.input
class CreateAgentInput:
    email: str
    name: str
    password: str
    role: Role = m.Role.AGENT  # type: ignore[valid-type]
    can_edit_contact_identity: bool = False


@strawberry.input
class UpdateAgentInput:
    id: relay.GlobalID
    role: Role | None = strawberry.UNSET  # type: ignore[valid-type]
    can_edit_contact_identity: bool | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    time_zone: str | None = strawberry.UNSET


@strawberry.input
class AgentIdInput:
    id: relay.GlobalID


@strawberry.input
class CreateTeamInput:
    name: str


@strawberry.input
class TeamMembersInput:
    team_id: relay.GlobalID
    agent_ids: list[relay.GlobalID]


@strawberry.input
class CreateApiKeyInput:
    name: str
    scopes: list[str]


@strawberry.input
class RevokeApiKeyInput:
    id: relay.GlobalID


@strawberry.type
class WorkspacePayload:
    workspace: Workspace | None = None
    user_errors: list[UserError]


@strawberry.type
class AgentPayload:
    agent: Agent | None = None
    user_errors: list[UserError]


@strawberry.type
class TeamPayload:
    team: Team | None = None
    user_errors: list[UserError]


@strawberry.type
class ApiKeyPayload:
    api_key: ApiKey | None = None
    secret: str | None = strawberry.field(default=None, description="The full key, shown this once only.")
    user_errors: list[UserError]


@strawberry.type
class WorkspaceQuery:
    @strawberry.field
    async def workspace(self, info: Info[Context, None]) -> Workspace:
        return Workspace.from_model(await r.get_workspace(info.context))

    @strawberry.field
    async def agents(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Agent]:
        return to_connection(await r.list_agents(info.context, first=first, after=after), Agent.from_model)

    @strawberry.field
    async def teams(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Team]:
        return to_connection(await r.list_teams(info.context, first=first, after=after), Team.from_model)

    @strawberry.field
    async def api_keys(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[ApiKey]:
        return to_connection(await r.list_api_keys(info.context, first=first, after=after), ApiKey.from_model)


@strawberry.type
class WorkspaceMutation:
    @strawberry.mutation(
        description="Owners and admins: name, time zone, identity matching, CRM edit rights, attribution window."
    )
    async def update_workspace(self, info: Info[Context, None], input: UpdateWorkspaceInput) -> WorkspacePayload:
        values = provided(
            input,
            (
                "name",
                "time_zone",
                "matching_attribute",
                "matching_attribute_key",
                "agents_can_edit_crm_attributes",
                "attribution_window_hours",
            ),
        )
        return await mutate(
            WorkspacePayload, r.update_workspace(info.context, values), lambda w: {"workspace": Workspace.from_model(w)}
        )

    @strawberry.mutation
    async def create_agent(self, info: Info[Context, None], input: CreateAgentInput) -> AgentPayload:
        work = r.create_agent(
            info.context,
            email=input.email,
            name=input.name,
            password=input.password,
            role=input.role,
            can_edit_contact_identity=input.can_edit_contact_identity,
        )
        return await mutate(AgentPayload, work, lambda a: {"agent": Agent.from_model(a)})

    @strawberry.mutation
    async def update_agent(self, info: Info[Context, None], input: UpdateAgentInput) -> AgentPayload:
        values = provided(input, ("role", "can_edit_contact_identity", "name", "time_zone"))
        return await mutate(
            AgentPayload, r.update_agent(info.context, str(input.id), values), lambda a: {"agent": Agent.from_model(a)}
        )

    @strawberry.mutation(
        description="Owners and admins (an owner only by an owner; never the last active owner): "
        "the agent cannot log in and every token it holds stops working at once, open sockets included. "
        "Its conversations stay assigned to it."
    )
    async def deactivate_agent(self, info: Info[Context, None], input: AgentIdInput) -> AgentPayload:
        return await mutate(
            AgentPayload,
            r.set_agent_active(info.context, str(input.id), active=False),
            lambda a: {"agent": Agent.from_model(a)},
        )

    @strawberry.mutation(
        description="Owners and admins (an owner only by an owner): "
        "the agent can log in again; its old tokens stay void."
    )
    async def reactivate_agent(self, info: Info[Context, None], input: AgentIdInput) -> AgentPayload:
        return await mutate(
            AgentPayload,
            r.set_agent_active(info.context, str(input.id), active=True),
            lambda a: {"agent": Agent.from_model(a)},
        )

    @strawberry.mutation
    async def create_team(self, info: Info[Context, None], input: CreateTeamInput) -> TeamPayload:
        return await mutate(
            TeamPayload, r.create_team(info.context, input.name), lambda t: {"team": Team.from_model(t)}
        )

    @strawberry.mutation
    async def add_team_members(self, info: Info[Context, None], input: TeamMembersInput) -> TeamPayload:
        work = r.set_team_members(info.context, str(input.team_id), [str(i) for i in input.agent_ids], add=True)
        return await mutate(TeamPayload, work, lambda t: {"team": Team.from_model(t)})

    @strawberry.mutation
    async def remove_team_members(self, info: Info[Context, None], input: TeamMembersInput) -> TeamPayload:
        work = r.set_team_members(info.context, str(input.team_id), [str(i) for i in input.agent_ids], add=False)
        return await mutate(TeamPayload, work, lambda t: {"team": Team.from_model(t)})

    @strawberry.mutation(description="The full key is in `secret`, returned this once.")
    async def create_api_key(self, info: Info[Context, None], input: CreateApiKeyInput) -> ApiKeyPayload:
        return await mutate(
            ApiKeyPayload,
            r.create_api_key(info.context, input.name, input.scopes),
            lambda pair: {"api_key": ApiKey.from_model(pair[0]), "secret": pair[1]},
        )

    @strawberry.mutation
    async def revoke_api_key(self, info: Info[Context, None], input: RevokeApiKeyInput) -> ApiKeyPayload:
        return await mutate(
            ApiKeyPayload, r.revoke_api_key(info.context, str(input.id)), lambda k: {"api_key": ApiKey.from_model(k)}
        )
