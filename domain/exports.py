"""Contact exports as plain data: which columns exist, spreadsheet-safe cells, and the
signature of a download link. No database, no framework.

    columns = parse_columns(["email", "tags", "attribute.plan"], {"plan": "text"})
    neutralize_row(["=HYPERLINK(...)", "-5", "+33 6 12"])   # ["'=HYPERLINK(...)", "-5", "'+33 6 12"]
    signature = download_signature(secret, workspace_id=3, job_id=42, expires=1767225600)

Column names are the segment rules' field names (snake_case built-in fields, `tags`,
`attribute.<key>` for attribute definitions) plus `id`, the contact's global id; the CSV
header repeats them as given. Datetimes are written in UTC as `2026-11-22T05:41:00Z`,
booleans as `true`/`false`, tags joined with `, `, absent values as empty cells.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.signing import same_secret

MAX_COLUMNS = 200
ATTRIBUTE_PREFIX = "attribute."

TEXT_COLUMNS = (
    "name",
    "email",
    "phone",
    "external_id",
    "country",
    "city",
    "time_zone",
    "locale",
    "browser_language",
    "os",
    "browser",
    "ip",
    "referrer",
    "platform",
    "sms_consent",
)
BOOLEAN_COLUMNS = ("gdpr_consent", "vip", "blocked")
DATETIME_COLUMNS = ("gdpr_consent_at", "sms_consent_at", "first_seen_at", "last_seen_at", "created_at", "updated_at")
BUILT_IN_COLUMNS = ("id", *TEXT_COLUMNS, *BOOLEAN_COLUMNS, *DATETIME_COLUMNS, "tags")

# The attribute report: who the contact is, then every attribute definition in order.
ATTRIBUTE_REPORT_IDENTITY = ("id", "external_id", "name", "email")
DEFAULT_COLUMNS = (
    "id",
    "name",
    "email",
    "phone",
    "external_id",
    "country",
    "city",
    "tags",
    "last_seen_at",
    "created_at",
)


@dataclass(frozen=True)
class Column:
    name: str  # as requested, and as the header says
    kind: str  # "id", "text", "boolean", "datetime", "tags" or "attribute"
    key: str = ""  # the built-in field, or the attribute key


@dataclass(frozen=True)
class ColumnError:
    index: int
    code: str  # UNKNOWN_FIELD, INVALID
    message: str


def _column(name: str, attribute_keys: Iterable[str]) -> Column | None:
    if name == "id":
        return Column(name, "id", "id")
    if name == "tags":
        return Column(name, "tags", "tags")
    if name in TEXT_COLUMNS:
        return Column(name, "text", name)
    if name in BOOLEAN_COLUMNS:
        return Column(name, "boolean", name)
    if name in DATETIME_COLUMNS:
        return Column(name, "datetime", name)
    if name.startswith(ATTRIBUTE_PREFIX) and name[len(ATTRIBUTE_PREFIX) :] in attribute_keys:
        return Column(name, "attribute", name[len(ATTRIBUTE_PREFIX) :])
    return None


def parse_columns(names: Sequence[str], attribute_keys: Iterable[str]) -> tuple[list[Column], list[ColumnError]]:
    """The columns for `names`, or an error per bad name (by its index in `names`)."""
    keys = set(attribute_keys)
    errors: list[ColumnError] = []
    if not names:
        return [], [ColumnError(-1, "REQUIRED", "Name at least one column.")]
    if len(names) > MAX_COLUMNS:
        return [], [ColumnError(-1, "INVALID", f"At most {MAX_COLUMNS} columns.")]
    columns: list[Column] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        column = _column(name, keys)
        if column is None:
            hint = (
                "no attribute is defined with this key"
                if name.startswith(ATTRIBUTE_PREFIX)
                else f"a built-in field ({', '.join(BUILT_IN_COLUMNS)}) or attribute.<key>"
            )
            errors.append(ColumnError(i, "UNKNOWN_FIELD", f"Unknown column {name[:80]!r}: {hint}."))
        elif name in seen:
            errors.append(ColumnError(i, "INVALID", f"Column {name!r} is named twice."))
        else:
            seen.add(name)
            columns.append(column)
    return columns, errors


def attribute_report_columns(attribute_keys: Iterable[str]) -> list[str]:
    """The attribute report's column names: identity first, then each attribute."""
    return [*ATTRIBUTE_REPORT_IDENTITY, *(ATTRIBUTE_PREFIX + key for key in attribute_keys)]


# -- spreadsheet formula injection ----------------------------------------------------------

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice and
# Google Sheets: = + - @, and tab or carriage return before one of them.
FORMULA_TRIGGERS = frozenset("=+-@\t\r")
# Plain numbers (-5, -0.25) start with '-' but cannot hold a formula: they stay numbers.
_PLAIN_NUMBER = re.compile(r"-[0-9]+(?:\.[0-9]+)?")


def neutralize(cell: Any) -> Any:
    """The cell with a leading apostrophe when a spreadsheet would run it as a formula."""
    if cell.__class__ is str and cell[:1] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def neutralize_row(row: Iterable[Any]) -> list[Any]:
    return [neutralize(cell) for cell in row]


# -- download links ----------------------------------------------------------------------------


def download_signature(secret: str, *, workspace_id: int, job_id: int, expires: int) -> str:
    """HMAC-SHA256 over the workspace, the job and the expiry time (Unix seconds)."""
    message = f"parley-export:{workspace_id}:{job_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_valid(secret: str, *, workspace_id: int, job_id: int, expires: int, signature: str, now: float) -> bool:
    """The signature is ours for exactly these values, and the link has not expired."""
    expected = download_signature(secret, workspace_id=workspace_id, job_id=job_id, expires=expires)
    return same_secret(expected, signature) and now < expires
