"""CRM sync for integrators: `syncContacts` (bulk upsert with per-row results and
idempotency keys) and `contactsChangedSince` (the change log, paged by cursor).

A sync call of up to MAX_ROWS rows costs a fixed number of statements, whatever its size:
the rows are validated in Python against one read of the attribute definitions (the
checks of createContact and updateContact, shared), the existing contacts of the whole
batch are found with one query, and creates, updates, tags, change-log rows and webhook
deliveries are each written in bulk. A row that fails is reported and skipped; the others
are applied. Rows are matched by externalId first, then by the workspace's matching
attribute (email, phone or a custom attribute).

Concurrent calls of one workspace are serialised (an advisory lock on PostgreSQL; SQLite
has a single writer), so two calls cannot both create the same contact, and a concurrent
duplicate of an idempotency key waits for the first call and replays its results.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from core.bulk import insert_returning, update_many
from core.context import Context
from core.db import SqlBuilder, dialect, json_text
from core.errors import Code, PublicError, UserError, UserFailure
from core.events import Outbox, atomic
from core.permissions import Permission, Principal, PrincipalKind
from domain import contact_fields as cf
from models.contacts import AttributeDefinition, ChangeKind, Contact, ContactChange, ContactTag, IdentitySource
from models.conversations import Conversation
from models.job_records import JobKind
from models.sync import ContactChangeHorizon, ContactSyncRequest
from models.workspaces import MatchingAttribute, Workspace
from resolvers.contacts import clean_tags, contact_named, release_session_claims, session_bit, trusted_value, vouch_for
from services import webhooks
from services.contacts import (
    apply_attributes,
    apply_consent_times,
    record_changes,
    validate_attributes,
    validate_fields,
)
from services.job_records import record_finished

MAX_ROWS = 1000
MAX_IDEMPOTENCY_KEY = 200
DEFAULT_CHANGES = 100
MAX_CHANGES = 1000
# PostgreSQL hands out change ids when rows are inserted, not when they commit: a reader
# could see id 101 committed while 100 is still in flight, move its cursor past 100 and
# never see it. Changes younger than this are held back until every transaction that
# could hold a smaller id has committed (SQLite has a single writer: ids commit in order).
SETTLE = timedelta(seconds=2)
# pg_advisory_xact_lock(SYNC_LOCK, workspace_id) serialises one workspace's sync calls.
SYNC_LOCK = 0x53594E43  # "SYNC"
TRIES = 3


class RowStatus:
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ERROR = "error"


@dataclass
class SyncRow:
    """One input row: built-in field values as sent, custom attributes, tags to add."""

    values: dict[str, Any]
    attributes: list[tuple[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


@dataclass
class SyncResult:
    index: int
    status: str
    contact_id: int | None = None
    errors: list[UserError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "contactId": self.contact_id,
            "errors": [{"field": e.field, "code": e.code.value, "message": e.message} for e in self.errors],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SyncResult:
        errors = [UserError(e["field"], Code(e["code"]), e["message"]) for e in data["errors"]]
        return cls(index=data["index"], status=data["status"], contact_id=data["contactId"], errors=errors)


@dataclass
class SyncOutcome:
    results: list[SyncResult]
    replayed: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


@dataclass
class _Plan:
    """A valid row, ready to write."""

    index: int
    clean: dict[str, Any]
    attributes: dict[str, Any]
    tags: list[str]
    external_id: str | None
    match: Any  # the value of the workspace's matching attribute, if the row has one
    contact: Contact | None = None
    changed: set[str] = field(default_factory=set)
    new_tags: list[str] = field(default_factory=list)


# -- syncContacts --------------------------------------------------------------------------


def request_hash(rows: Sequence[SyncRow]) -> str:
    canonical = json.dumps(
        [[r.values, r.attributes, r.tags] for r in rows], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def sync_contacts(ctx: Context, rows: Sequence[SyncRow], idempotency_key: str | None) -> SyncOutcome:
    principal = ctx.require(Permission.CONTACTS_WRITE)
    ws = ctx.scope.workspace_id
    if len(rows) > MAX_ROWS:
        raise UserFailure.of("contacts", Code.TOO_LONG, f"At most {MAX_ROWS} contacts per call: split the batch.")
    key = idempotency_key.strip() if idempotency_key is not None else None
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise UserFailure.of(
            "idempotencyKey", Code.INVALID, f"idempotencyKey has 1 to {MAX_IDEMPOTENCY_KEY} characters."
        )
    started_at = datetime.now(UTC)
    digest = request_hash(rows)
    if key is not None and (replay := await _replay(ws, key, digest)) is not None:
        return replay

    workspace = await Workspace.get(id=ws)
    definitions = {d.key: d for d in await AttributeDefinition.filter(workspace_id=ws)}
    results: dict[int, SyncResult] = {}
    plans: list[_Plan] = []
    for index, row in enumerate(rows):
        errors: list[UserError] = []
        clean = validate_fields(row.values, principal, errors)
        attrs = await validate_attributes(ws, row.attributes, principal, errors, definitions)
        tags = clean_tags(row.tags, errors)
        if errors:
            results[index] = SyncResult(index, RowStatus.ERROR, errors=[_at(index, e) for e in errors])
            continue
        plans.append(_Plan(index, clean, attrs, tags, clean.get("external_id"), _match_value(workspace, clean, attrs)))
    plans = _without_duplicates(workspace, plans, results)

    for attempt in range(TRIES):
        try:
            async with atomic(ctx.outbox):
                if dialect() == "postgres":
                    await connections.get("default").execute_query(
                        "SELECT pg_advisory_xact_lock($1, $2)", [SYNC_LOCK, ws]
                    )
                if key is not None and (replay := await _replay(ws, key, digest)) is not None:
                    return replay
                outcome = await _apply(ctx.outbox, principal, workspace, plans, dict(results))
                await _note_agent_crm_edits(principal, workspace.id, plans, definitions, outcome)
                # The batch's job record (kind SYNC): in its transaction, so a replay adds none.
                statuses = (RowStatus.CREATED, RowStatus.UPDATED, RowStatus.UNCHANGED, RowStatus.ERROR)
                await record_finished(
                    ws,
                    JobKind.SYNC,
                    started_at=started_at,
                    processed=len(rows),
                    result={status: outcome.count(status) for status in statuses},
                    principal=principal,
                    params={"rows": len(rows)},
                )
                if key is not None:
                    await ContactSyncRequest.create(
                        workspace_id=ws,
                        idempotency_key=key,
                        request_hash=digest,
                        results=[r.to_json() for r in outcome.results],
                    )
            return outcome
        except IntegrityError:
            # Another process created one of these contacts (or stored this key) first:
            # read again and plan afresh. A replay is found by the next try.
            if attempt == TRIES - 1:
                raise
            for plan in plans:
                plan.contact, plan.changed, plan.new_tags = None, set(), []
    raise AssertionError("unreachable")


async def _replay(workspace_id: int, key: str, digest: str) -> SyncOutcome | None:
    stored = await ContactSyncRequest.get_or_none(workspace_id=workspace_id, idempotency_key=key)
    if stored is None:
        return None
    if stored.request_hash != digest:
        raise UserFailure.of(
            "idempotencyKey",
            Code.CONFLICT,
            "This idempotencyKey was used with other contacts: use a new key for a new batch.",
        )
    return SyncOutcome([SyncResult.from_json(r) for r in stored.results], replayed=True)


def _at(index: int, error: UserError) -> UserError:
    return UserError(["contacts", str(index), *(error.field or [])], error.code, error.message)


def _match_kind(workspace: Workspace) -> tuple[MatchingAttribute, str | None]:
    kind = workspace.matching_attribute
    if kind is MatchingAttribute.CUSTOM:
        key = workspace.matching_attribute_key
        return kind, key if key and cf.ATTRIBUTE_KEY.match(key) else None
    return kind, None


def _match_value(workspace: Workspace, clean: dict[str, Any], attrs: dict[str, Any]) -> Any:
    kind, key = _match_kind(workspace)
    if kind is MatchingAttribute.CUSTOM:
        return _comparable(attrs.get(key)) if key else None
    return clean.get(kind.value) or None


def _comparable(value: Any) -> Any:
    """A custom attribute value as the database's JSON lookup returns it."""
    if value is None or dialect() != "postgres":
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _match_path(workspace: Workspace) -> list[str]:
    kind, key = _match_kind(workspace)
    return ["attributes"] if kind is MatchingAttribute.CUSTOM else [cf.camel(kind.value)]


def _without_duplicates(workspace: Workspace, plans: list[_Plan], results: dict[int, SyncResult]) -> list[_Plan]:
    """Rows without a key are refused, and so is a second row with a key an earlier row
    of the same call has: each contact once per call."""
    kind = workspace.matching_attribute.value.replace("_", " ")
    seen_external: dict[str, int] = {}
    seen_match: dict[Any, int] = {}
    kept = []
    for plan in plans:
        error = None
        if plan.external_id is None and plan.match is None:
            error = UserError(
                ["contacts", str(plan.index)],
                Code.REQUIRED,
                f"A row needs an externalId or the workspace's matching attribute ({kind}).",
            )
        elif plan.external_id is not None and plan.external_id in seen_external:
            error = UserError(
                ["contacts", str(plan.index), "externalId"],
                Code.CONFLICT,
                f"Row {seen_external[plan.external_id]} has the same externalId: send each contact once per call.",
            )
        elif plan.match is not None and plan.match in seen_match:
            error = UserError(
                ["contacts", str(plan.index), *_match_path(workspace)],
                Code.CONFLICT,
                f"Row {seen_match[plan.match]} has the same {kind}: send each contact once per call.",
            )
        if error is not None:
            results[plan.index] = SyncResult(plan.index, RowStatus.ERROR, errors=[error])
            continue
        if plan.external_id is not None:
            seen_external[plan.external_id] = plan.index
        if plan.match is not None:
            seen_match[plan.match] = plan.index
        kept.append(plan)
    return kept


def _match_sql(workspace: Workspace) -> str | None:
    """The SQL of the matching attribute's value of a contact row (None: external_id)."""
    kind, key = _match_kind(workspace)
    if kind is MatchingAttribute.EXTERNAL_ID:
        return None
    if kind is MatchingAttribute.CUSTOM:
        if key is None:
            return None
        # The key passed ATTRIBUTE_KEY (lowercase letters, digits and _): safe to inline.
        return json_text("attributes", key)
    return kind.value


async def _existing(workspace: Workspace, plans: list[_Plan]) -> tuple[dict[str, Contact], dict[Any, Contact]]:
    """The contacts the batch names, by external id and by matching value (trusted
    contacts only: a value a widget session reported links nothing): one query, rows
    locked until the commit (PostgreSQL).

    On PostgreSQL each list is one array parameter (`= ANY($2::text[])`), planned afresh
    for its values (plan_cache_mode): the unique (workspace_id, external_id) index and the
    (workspace_id, email) one are probed once per value. A cached generic plan, or one made
    with statistics older than a bulk load, may scan the workspace instead; with the values
    known, the array is at least hashed, where a thousand `IN ($2, $3, …)` parameters
    would be compared one by one for every row."""
    externals = sorted({p.external_id for p in plans if p.external_id is not None})
    match_sql = _match_sql(workspace)
    # Matching values are strings on PostgreSQL (see _comparable), typed on SQLite.
    matches = list(dict.fromkeys(p.match for p in plans if p.match is not None)) if match_sql else []
    lookups = [(column, values) for column, values in (("external_id", externals), (match_sql, matches)) if values]
    if not lookups:
        return {}, {}
    q = SqlBuilder()
    conn = connections.get("default")
    branches = []
    for column, values in lookups:
        ws = q.param(workspace.id)
        trusted = "" if column == "external_id" else f" AND {trusted_value(column)}"
        if q.postgres:
            branches.append(
                f"SELECT id FROM contacts WHERE workspace_id = {ws}{trusted} "  # noqa: S608
                f"AND {column} = ANY({q.param([str(v) for v in values])}::text[])"
            )
        else:
            branches.append(
                f"SELECT id FROM contacts WHERE workspace_id = {ws}{trusted} AND {column} IN {q.in_list(values)}"  # noqa: S608
            )
    sql = f"SELECT * FROM contacts WHERE id IN ({' UNION ALL '.join(branches)}) ORDER BY id"  # noqa: S608
    if q.postgres:
        await conn.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")
        sql += " FOR UPDATE"
    by_external: dict[str, Contact] = {}
    by_match_value: dict[Any, Contact] = {}
    for row in await conn.execute_query_dict(sql, q.params):
        contact = Contact._init_from_db(**row)
        if contact.external_id is not None:
            by_external.setdefault(contact.external_id, contact)
        value = _contact_match(workspace, contact)
        if (
            value is not None
            and contact.identity_source is IdentitySource.TRUSTED
            and not contact.session_fields & session_bit(_match_kind(workspace)[0].value)
        ):
            by_match_value.setdefault(value, contact)  # the oldest, as find_matching_contact
    return by_external, by_match_value


def _contact_match(workspace: Workspace, contact: Contact) -> Any:
    kind, key = _match_kind(workspace)
    if kind is MatchingAttribute.CUSTOM:
        return _comparable((contact.attributes or {}).get(key)) if key else None
    return getattr(contact, kind.value) or None


async def _apply(
    outbox: Outbox, principal: Principal, workspace: Workspace, plans: list[_Plan], results: dict[int, SyncResult]
) -> SyncOutcome:
    # The CRM wins an external id that an unverified session claimed (contacts.py).
    await release_session_claims(
        outbox, workspace.id, sorted({p.external_id for p in plans if p.external_id is not None})
    )
    by_external, by_match = await _existing(workspace, plans)
    match_path = _match_path(workspace)
    kind = workspace.matching_attribute.value.replace("_", " ")
    stamp = datetime.now(UTC)
    claimed: dict[int, int] = {}  # contact id -> row index
    creates: list[_Plan] = []
    updates: list[_Plan] = []
    for plan in plans:
        path = ["contacts", str(plan.index)]
        target = by_external.get(plan.external_id) if plan.external_id is not None else None
        by_value = by_match.get(plan.match) if plan.match is not None else None
        error = None
        if target is None and by_value is not None:
            if plan.external_id is not None and by_value.external_id not in (None, plan.external_id):
                error = UserError(
                    [*path, *match_path],
                    Code.TAKEN,
                    f"{contact_named(principal, by_value.id)} has this {kind} (the workspace's matching "
                    f"attribute) and another externalId.",
                )
            target = by_value
        elif target is not None and by_value is not None and by_value.id != target.id:
            error = UserError(
                [*path, *match_path],
                Code.TAKEN,
                f"{contact_named(principal, by_value.id)} already has this {kind}, the workspace's "
                "matching attribute: merge the two contacts first.",
            )
        if error is None and target is not None and target.id in claimed:
            error = UserError(
                path,
                Code.CONFLICT,
                f"Row {claimed[target.id]} updates the same contact: send each contact once per call.",
            )
        if error is not None:
            results[plan.index] = SyncResult(plan.index, RowStatus.ERROR, errors=[error])
            continue
        if target is None:
            plan.contact = Contact(workspace_id=workspace.id, first_seen_at=stamp, last_seen_at=stamp, **plan.clean)
            apply_consent_times(plan.contact, plan.clean, stamp)
            apply_attributes(plan.contact, plan.attributes)
            plan.new_tags = plan.tags
            creates.append(plan)
        else:
            claimed[target.id] = plan.index
            plan.contact = target
            _change(plan, stamp, _match_kind(workspace)[1])
            updates.append(plan)

    await _new_tags(updates)
    changed = [p for p in updates if p.changed or p.new_tags]
    fields = sorted(set().union(*(p.changed for p in changed))) if changed else []
    await _insert_created(workspace, creates)
    await update_many(Contact, [p.contact for p in changed if p.contact is not None], [*fields, "updated_at"])
    await _add_tags(workspace.id, creates + changed)
    await _sync_vip(changed)

    for written, status in ((creates, RowStatus.CREATED), (changed, RowStatus.UPDATED)):
        for plan in written:
            assert plan.contact is not None
            results[plan.index] = SyncResult(plan.index, status, plan.contact.id)
    for plan in updates:
        if plan.index not in results:
            results[plan.index] = SyncResult(plan.index, RowStatus.UNCHANGED, plan.contact.id if plan.contact else None)
    written = [(p.contact, ChangeKind.CREATED) for p in creates] + [(p.contact, ChangeKind.UPDATED) for p in changed]
    await record_changes(outbox, workspace.id, [(c, k) for c, k in written if c is not None])
    return SyncOutcome([results[i] for i in sorted(results)])


async def _note_agent_crm_edits(
    principal: Principal,
    workspace_id: int,
    plans: list[_Plan],
    definitions: dict[str, AttributeDefinition],
    outcome: SyncOutcome,
) -> None:
    """An agent syncing CRM-managed attributes (where the workspace lets agents write them)
    edits them as in updateContact: pushed to the CRM at the next status change."""
    if principal.kind is not PrincipalKind.AGENT:
        return
    written = {r.index for r in outcome.results if r.status in (RowStatus.CREATED, RowStatus.UPDATED)}
    await webhooks.note_agent_crm_edits(
        principal,
        workspace_id,
        {
            plan.contact.id: {k for k in plan.attributes if definitions[k].crm_managed}
            for plan in plans
            if plan.index in written and plan.contact is not None
        },
    )


def _change(plan: _Plan, stamp: datetime, matching_key: str | None) -> None:
    """Apply the row to its existing contact in memory, noting the fields that change."""
    contact = plan.contact
    assert contact is not None
    if contact.identity_source is not IdentitySource.TRUSTED:
        # The CRM names this contact by its external id: it vouches for it from now on,
        # and for the values this row writes, not for an e-mail its session typed.
        contact.identity_source = IdentitySource.TRUSTED
        plan.changed.add("identity_source")
    if vouch_for(contact, plan.clean, plan.attributes, matching_key):
        plan.changed.add("session_fields")
    changed_consent = {}
    for name, value in plan.clean.items():
        if getattr(contact, name) != value:
            if name in ("gdpr_consent", "sms_consent"):
                changed_consent[name] = value
            setattr(contact, name, value)
            plan.changed.add(name)
    if changed_consent:
        apply_consent_times(contact, changed_consent, stamp)
        plan.changed |= {f"{name}_at" for name in changed_consent}
    if plan.attributes:
        before = dict(contact.attributes or {})
        apply_attributes(contact, plan.attributes)
        if contact.attributes != before:
            plan.changed.add("attributes")


async def _insert_created(workspace: Workspace, creates: list[_Plan]) -> None:
    """Insert the new contacts and give each plan its id back: rows are told apart by
    external id, or by matching value (both unique within a call)."""
    if not creates:
        return
    match_sql = _match_sql(workspace)
    returning = ["id", "external_id", f"{match_sql} AS match_value" if match_sql else "NULL AS match_value"]
    rows = await insert_returning(Contact, [p.contact for p in creates if p.contact is not None], returning)
    by_external = {r["external_id"]: r["id"] for r in rows if r["external_id"] is not None}
    by_match = {r["match_value"]: r["id"] for r in rows if r["external_id"] is None and r["match_value"] is not None}
    for plan in creates:
        assert plan.contact is not None
        found = by_external.get(plan.external_id) if plan.external_id is not None else by_match.get(plan.match)
        if found is None:
            raise RuntimeError(f"syncContacts: the new contact of row {plan.index} was not returned")
        plan.contact.id = int(found)
        plan.contact._saved_in_db = True


async def _new_tags(updates: list[_Plan]) -> None:
    """Tags are added, never removed: one read of the tags the updated contacts have."""
    wanted = {p.contact.id: p for p in updates if p.tags and p.contact is not None}
    if not wanted:
        return
    existing: dict[int, set[str]] = {}
    for contact_id, name in await ContactTag.filter(contact_id__in=list(wanted)).values_list("contact_id", "name"):
        existing.setdefault(contact_id, set()).add(name)
    for contact_id, plan in wanted.items():
        plan.new_tags = [t for t in plan.tags if t not in existing.get(contact_id, set())]


async def _add_tags(workspace_id: int, plans: list[_Plan]) -> None:
    fresh = [
        ContactTag(workspace_id=workspace_id, contact_id=p.contact.id, name=name)
        for p in plans
        if p.contact is not None
        for name in p.new_tags
    ]
    if fresh:
        await ContactTag.bulk_create(fresh)


async def _sync_vip(changed: list[_Plan]) -> None:
    """Conversations carry a copy of their contact's VIP flag (the queue sorts by it)."""
    for vip in (True, False):
        ids = [p.contact.id for p in changed if p.contact is not None and "vip" in p.changed and p.contact.vip is vip]
        if ids:
            await Conversation.filter(contact_id__in=ids).exclude(vip=vip).update(vip=vip)


# -- contactsChangedSince ------------------------------------------------------------------


@dataclass
class ChangePage:
    changes: list[ContactChange]
    has_next_page: bool
    end_cursor: str | None
    workspace_id: int


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise PublicError(
            "Invalid cursor: pass the cursor of a change, or nothing to start at the oldest.", Code.INVALID
        )
    return int(cursor)


def _settled() -> Q:
    if dialect() == "postgres" and SETTLE:
        return Q(at__lte=datetime.now(UTC) - SETTLE)
    return Q()


async def changes_since(ctx: Context, cursor: str | None, first: int | None) -> ChangePage:
    """Every contact change after `cursor`, oldest first; deletions included."""
    ctx.require(Permission.CONTACTS_READ)
    size = DEFAULT_CHANGES if first is None else first
    if not 0 <= size <= MAX_CHANGES:
        raise PublicError(f"first must be between 0 and {MAX_CHANGES}.", Code.INVALID)
    after = _parse_cursor(cursor)
    ws = ctx.scope.workspace_id
    horizon = await ContactChangeHorizon.get_or_none(workspace_id=ws)
    if after is not None and horizon is not None and after < horizon.pruned_through:
        raise PublicError(
            "This cursor is older than the change log, which keeps changes for 90 days: some changes after it "
            "were pruned. Resync in full (the contacts query), then continue from latestCursor.",
            Code.CURSOR_EXPIRED,
        )
    query = ctx.scope.all(ContactChange).filter(_settled())
    if after is not None:
        query = query.filter(id__gt=after)
    rows = list(await query.order_by("id").limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    end = str(rows[-1].id) if rows else cursor or None
    return ChangePage(changes=rows, has_next_page=more, end_cursor=end, workspace_id=ws)


async def latest_cursor(workspace_id: int) -> str | None:
    """The newest settled change: where a client that just resynced in full continues."""
    newest = await ContactChange.filter(Q(workspace_id=workspace_id), _settled()).order_by("-id").first()
    return str(newest.id) if newest else None


async def load_contact(ctx: Context, contact_id: int) -> Contact | None:
    async def batch(ids: list[int]) -> list[Contact | None]:
        found = await ctx.scope.get_many(Contact, ids)
        return [found.get(i) for i in ids]

    return await ctx.loader("by_id.Contact", batch).load(contact_id)  # type: ignore[no-any-return]
