"""Outbound webhooks: endpoints, their secrets (shown once), and the delivery log."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from core.errors import forbidden
from core.permissions import Permission
from models import webhooks as m
from resolvers import webhooks as r
from runtime.execution import plain
from runtime.guards import guard
from schema.common import JSON, Connection, UserError, mutate, provided, to_connection
from schema.job_records import Job

WebhookEventType = strawberry.enum(m.WebhookEventType, name="WebhookEventType")
WebhookDeliveryStatus = strawberry.enum(m.DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type
class WebhookAttempt:
    """One POST of a delivery."""

    attempt: int
    status_code: int | None = strawberry.field(description="The receiver's HTTP status; null when there was no answer.")
    error: str | None
    duration_ms: int
    at: datetime

    @classmethod
    def from_model(cls, a: m.WebhookAttempt) -> WebhookAttempt:
        return cls(attempt=a.attempt, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms, at=a.at)


@guard(lambda ctx, _: ctx.lacks(Permission.WEBHOOKS_MANAGE))
@strawberry.type
class WebhookDelivery(relay.Node):
    """One event sent to one endpoint, with every attempt."""

    id: relay.NodeID[int]
    event_id: str = strawberry.field(description="The same for every endpoint and attempt: the body's id.")
    event_type: str
    status: WebhookDeliveryStatus  # type: ignore[valid-type]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None
    _payload: strawberry.Private[object]
    _endpoint_id: strawberry.Private[int]
    _job_id: strawberry.Private[int | None]

    @strawberry.field(
        description="The JSON body, as posted. Contact events need contacts:read as well, "
        "conversation events conversations:read too: without them, null and a FORBIDDEN error."
    )
    @plain
    def payload(self, info: Info[Context, None]) -> JSON | None:
        refusal = r.payload_refusal(info.context, self.event_type)
        if refusal is not None:
            raise forbidden(refusal)
        return self._payload

    @strawberry.field(description="Its job record (kind WEBHOOK_DELIVERY), made at the first attempt.")
    async def job(self, info: Info[Context, None]) -> Job | None:
        found = await r.load_job(info.context, self._job_id)
        return Job.from_model(found) if found else None

    @strawberry.field(description="Every attempt, first to last: status code, error, duration.")
    async def attempt_log(self, info: Info[Context, None]) -> list[WebhookAttempt]:
        return [WebhookAttempt.from_model(a) for a in await r.load_attempts(info.context, self.id)]

    @strawberry.field
    async def endpoint(self, info: Info[Context, None]) -> WebhookEndpoint | None:
        found = await r.load_endpoint(info.context, self._endpoint_id)
        return WebhookEndpoint.from_model(found) if found else None

    @classmethod
    def from_model(cls, d: m.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status is m.DeliveryStatus.PENDING else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            _payload=d.payload,
            created_at=d.created_at,
            completed_at=d.completed_at,
            _endpoint_id=d.endpoint_id,
            _job_id=d.job_id,
        )


@strawberry.type
class WebhookEndpoint(relay.Node):
    id: relay.NodeID[int]
    url: str
    description: str | None
    event_types: list[WebhookEventType]  # type: ignore[valid-type]
    enabled: bool
    consecutive_failures: int = strawberry.field(
        description="Failed attempts since the last success; too many disable the endpoint."
    )
    disabled_reason: str | None
    disabled_at: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The delivery log, newest first.")
    async def deliveries(
        self,
        info: Info[Context, None],
        status: WebhookDeliveryStatus | None = None,  # type: ignore[valid-type]
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[WebhookDelivery]:
        page = await r.list_deliveries(info.context, self.id, status=status, first=first, after=after)
        return to_connection(page, WebhookDelivery.from_model)

    @classmethod
    def from_model(cls, e: m.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=[m.WebhookEventType(t) for t in e.event_types or []],
            enabled=e.enabled,
            consecutive_failures=e.consecutive_failures,
            disabled_reason=e.disabled_reason,
            disabled_at=e.disabled_at,
            last_success_at=e.last_success_at,
            last_failure_at=e.last_failure_at,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


# -- inputs and payloads -------------------------------------------------------------------


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    event_types: list[WebhookEventType]  # type: ignore[valid-type]
    description: str | None = None
    enabled: bool = True


@strawberry.input
class UpdateWebhookEndpointInput:
    id: relay.GlobalID
    url: str | None = strawberry.UNSET
    event_types: list[WebhookEventType] | None = strawberry.UNSET  # type: ignore[valid-type]
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="true again clears the failure count."
    )


@strawberry.input
class WebhookEndpointIdInput:
    id: relay.GlobalID


@strawberry.type
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    user_errors: list[UserError]


@strawberry.type
class WebhookEndpointSecretPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(default=None, description="Signs every delivery. Shown this once: keep it.")
    user_errors: list[UserError]


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted_id: relay.GlobalID | None = None
    user_errors: list[UserError]


@strawberry.type
class PingWebhookEndpointPayload:
    delivery: WebhookDelivery | None = None
    user_errors: list[UserError]


def _with_secret(result: tuple[m.WebhookEndpoint, str]) -> dict[str, object]:
    endpoint, secret = result
    return {"endpoint": WebhookEndpoint.from_model(endpoint), "secret": secret}


def _values(value: object) -> str:
    return value.value if hasattr(value, "value") else str(value)  # type: ignore[no-any-return]


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The workspace's webhook endpoints (webhooks:manage).")
    async def webhook_endpoints(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[WebhookEndpoint]:
        return to_connection(await r.list_endpoints(info.context, first=first, after=after), WebhookEndpoint.from_model)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Register an endpoint; the answer carries its signing secret, shown once.")
    async def create_webhook_endpoint(
        self, info: Info[Context, None], input: CreateWebhookEndpointInput
    ) -> WebhookEndpointSecretPayload:
        work = r.create_endpoint(
            info.context,
            url=input.url,
            event_types=[_values(t) for t in input.event_types],
            description=input.description,
            enabled=input.enabled,
        )
        return await mutate(WebhookEndpointSecretPayload, work, _with_secret)

    @strawberry.mutation
    async def update_webhook_endpoint(
        self, info: Info[Context, None], input: UpdateWebhookEndpointInput
    ) -> WebhookEndpointPayload:
        values = provided(input, ("url", "event_types", "description", "enabled"))
        if values.get("event_types") is not None:
            values["event_types"] = [_values(t) for t in values["event_types"]]
        work = r.update_endpoint(info.context, str(input.id), values)
        return await mutate(WebhookEndpointPayload, work, lambda e: {"endpoint": WebhookEndpoint.from_model(e)})

    @strawberry.mutation(description="A new signing secret, shown once; the old one stops signing at once.")
    async def rotate_webhook_endpoint_secret(
        self, info: Info[Context, None], input: WebhookEndpointIdInput
    ) -> WebhookEndpointSecretPayload:
        return await mutate(WebhookEndpointSecretPayload, r.rotate_secret(info.context, str(input.id)), _with_secret)

    @strawberry.mutation(description="Removes the endpoint and its delivery log.")
    async def delete_webhook_endpoint(
        self, info: Info[Context, None], input: WebhookEndpointIdInput
    ) -> DeleteWebhookEndpointPayload:
        return await mutate(
            DeleteWebhookEndpointPayload,
            r.delete_endpoint(info.context, str(input.id)),
            lambda _: {"deleted_id": input.id},
        )

    @strawberry.mutation(
        description="Send a webhook.ping event to this endpoint (enabled or not) to check the receiver."
    )
    async def ping_webhook_endpoint(
        self, info: Info[Context, None], input: WebhookEndpointIdInput
    ) -> PingWebhookEndpointPayload:
        work = r.ping_endpoint(info.context, str(input.id))
        return await mutate(PingWebhookEndpointPayload, work, lambda d: {"delivery": WebhookDelivery.from_model(d)})
