"""Attachments: the `Upload` scalar (the GraphQL multipart request spec, as Apollo and urql
clients send files), `Attachment` (on `Message.attachments`), `createUploadUrl` for large
files, and each workspace's attachment policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload
from strawberry.types import Info
from strawberry.types.scalar import scalar

from core.context import Context
from core.errors import Code, PublicError
from core.scoping import encode_global_id
from models.attachments import Attachment as AttachmentRow
from resolvers import attachments as r
from resolvers.attachments import Limits, download_url
from schema.common import UserError, mutate

__all__ = ["UPLOAD", "Attachment", "AttachmentMutation", "AttachmentQuery", "Upload"]


def _file(value: object) -> UploadFile:
    """A file part of a multipart request; anything else (a string in a JSON request, a
    literal in the document) is a request error, not a file (a PublicError: graphql-core
    would wrap a ValueError from a literal, and it would be masked as an internal error)."""
    if not isinstance(value, UploadFile):
        raise PublicError(
            "An Upload is a file sent as a part of a multipart request (the GraphQL multipart request spec).",
            Code.INVALID,
        )
    return value


def _no_output(value: object) -> None:
    raise PublicError("Upload is an input type only.", Code.INVALID)


# Strawberry's own Upload type, with a definition that accepts only files (schema/__init__.py
# puts it in the schema's scalar_map).
UPLOAD = scalar(
    name="Upload",
    description="A file, sent as the GraphQL multipart request spec has it (apollo-upload-client, urql).",
    serialize=_no_output,
    parse_value=_file,
)


@strawberry.type(description="A file sent with a message.")
class Attachment:
    id: strawberry.ID
    filename: str
    content_type: str
    size: int = strawberry.field(description="In bytes.")
    url: str = strawberry.field(
        description="A signed download link, valid ATTACHMENT_LINK_TTL_SECONDS (1 h unless set): "
        "read the field again for a fresh one."
    )

    @classmethod
    def from_model(cls, a: AttachmentRow) -> Attachment:
        return cls(
            id=strawberry.ID(encode_global_id("Attachment", a.id)),
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            url=download_url(a.workspace_id, a.id),
        )

    @classmethod
    def from_row(cls, workspace_id: int, row: dict[str, Any]) -> Attachment:
        """From a message event's copy (services/attachments.py `event_rows`)."""
        return cls(
            id=strawberry.ID(encode_global_id("Attachment", row["id"])),
            filename=row["filename"],
            content_type=row["contentType"],
            size=row["size"],
            url=download_url(workspace_id, row["id"]),
        )


@strawberry.type(description="What files this workspace accepts.")
class AttachmentPolicy:
    max_bytes: int = strawberry.field(description="The largest file, in bytes.")
    content_types: list[str] = strawberry.field(description='Media types and patterns such as "image/*".')

    @classmethod
    def from_limits(cls, limits: Limits) -> AttachmentPolicy:
        return cls(max_bytes=limits.max_bytes, content_types=limits.content_types)


@strawberry.input
class CreateUploadUrlInput:
    filename: str
    content_type: str
    size: int = strawberry.field(description="The file's exact length in bytes.")


@strawberry.type
class CreateUploadUrlPayload:
    url: str | None = strawberry.field(
        default=None, description="PUT the file's bytes here (exactly `size` of them) before `expiresAt`."
    )
    upload_id: strawberry.ID | None = strawberry.field(
        default=None, description="Then pass it in sendMessage's or startConversation's `uploadIds`."
    )
    expires_at: datetime | None = None
    user_errors: list[UserError]


@strawberry.input
class SetAttachmentPolicyInput:
    max_bytes: int | None = strawberry.field(default=None, description="Omitted: stays.")
    content_types: list[str] | None = strawberry.field(default=None, description="Omitted: stays.")


@strawberry.type
class AttachmentPolicyPayload:
    policy: AttachmentPolicy | None = None
    user_errors: list[UserError]


@strawberry.type
class AttachmentQuery:
    @strawberry.field(description="The workspace's limits on files (agents, API keys and contact sessions).")
    async def attachment_policy(self, info: Info[Context, None]) -> AttachmentPolicy:
        return AttachmentPolicy.from_limits(await r.attachment_policy(info.context))


@strawberry.type
class AttachmentMutation:
    @strawberry.mutation(
        description="A signed URL to PUT a large file to (agents and keys with conversations:write, contact "
        "sessions); then send it by its uploadId."
    )
    async def create_upload_url(self, info: Info[Context, None], input: CreateUploadUrlInput) -> CreateUploadUrlPayload:
        work = r.create_upload_url(info.context, input.filename, input.content_type, input.size)
        return await mutate(
            CreateUploadUrlPayload,
            work,
            lambda t: {
                "url": t.url,
                "upload_id": strawberry.ID(encode_global_id("Attachment", t.attachment.id)),
                "expires_at": t.expires_at,
            },
        )

    @strawberry.mutation(description="Owners and admins: the largest file and the allowed types.")
    async def set_attachment_policy(
        self, info: Info[Context, None], input: SetAttachmentPolicyInput
    ) -> AttachmentPolicyPayload:
        work = r.set_policy(info.context, input.max_bytes, input.content_types)
        return await mutate(AttachmentPolicyPayload, work, lambda p: {"policy": AttachmentPolicy.from_limits(p)})
