"""Contact exports: `exportContacts`, `exportAttributeReport`, and `exportColumns`."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry import relay
from strawberry.types import Info

from core.context import Context
from core.permissions import Permission
from domain import exports as ex
from models.job_records import JobKind
from resolvers import exports as r
from schema.common import ContactIdInput, UserError, gid, mutate
from schema.job_records import Job


@strawberry.enum
class ExportFormat(Enum):
    CSV = "csv"


@strawberry.input(
    description="""A CSV of a segment's contacts (or every contact), one row per contact.
`columns` are contact fields as segment rules name them (email, external_id, last_seen_at, …),
`id`, `tags`, and `attribute.<key>` for attribute definitions; exportColumns lists them."""
)
class ExportContactsInput:
    columns: list[str]
    segment_id: relay.GlobalID | None = strawberry.field(default=None, description="Omit for every contact.")
    format: ExportFormat = ExportFormat.CSV
    email_to: list[str] | None = strawberry.field(
        default=None, description="Addresses to e-mail the download link to (at most 10)."
    )


@strawberry.input(description="The attribute report: id, external_id, name, email and every contact attribute.")
class ExportAttributeReportInput:
    segment_id: relay.GlobalID | None = None
    format: ExportFormat = ExportFormat.CSV
    email_to: list[str] | None = None


@strawberry.type
class ExportPayload:
    job: Job | None = None
    user_errors: list[UserError]


def _job(job: object) -> dict[str, object]:
    return {"job": Job.from_model(job)}  # type: ignore[arg-type]


@strawberry.type
class ExportQuery:
    @strawberry.field(description="The column names exportContacts accepts, built-in fields first.")
    async def export_columns(self, info: Info[Context, None]) -> list[str]:
        ctx = info.context
        ctx.require(Permission.CONTACTS_READ)
        keys = await r.attribute_keys(ctx.scope.workspace_id)
        return [*ex.BUILT_IN_COLUMNS, *(ex.ATTRIBUTE_PREFIX + k for k in keys)]


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description="""Queues one contact's data archive (a GDPR access request): a JSON document with the
profile, attributes, consents, tags, segment memberships, notes, events, and conversations with their
messages. Follow it with jobProgress, then download Job.downloadUrl (contacts:export)."""
    )
    async def export_contact_data(self, info: Info[Context, None], input: ContactIdInput) -> ExportPayload:
        return await mutate(ExportPayload, r.start_contact_data_export(info.context, str(input.id)), _job)

    @strawberry.mutation(description="Queues a CSV export; follow it with jobProgress, then download Job.downloadUrl.")
    async def export_contacts(self, info: Info[Context, None], input: ExportContactsInput) -> ExportPayload:
        work = r.start_export(
            info.context,
            JobKind.EXPORT,
            columns=input.columns,
            segment_gid=gid(input.segment_id),
            email_to=input.email_to,
        )
        return await mutate(ExportPayload, work, _job)

    @strawberry.mutation(
        description="Queues the attribute report, a CSV export with every contact attribute as a column."
    )
    async def export_attribute_report(
        self, info: Info[Context, None], input: ExportAttributeReportInput
    ) -> ExportPayload:
        work = r.start_export(
            info.context,
            JobKind.ATTRIBUTE_REPORT,
            columns=None,
            segment_gid=gid(input.segment_id),
            email_to=input.email_to,
        )
        return await mutate(ExportPayload, work, _job)
