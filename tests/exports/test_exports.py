"""Contact exports through the API: validation, permissions, the CSV itself (columns,
UTF-8, formula injection), segments, the attribute report, the signed download link and
the e-mail with it. The task runs in this process here (jobs/exports.export_contacts);
tests/exports/test_exports_live.py runs it in a real worker."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from strawberry.relay import GlobalID

from jobs.exports import export_contacts
from jobs.segments import refresh_segment
from services.exports import signed_url
from tests.conftest import Api, Tenant, pk

EXPORT = """mutation($i: ExportContactsInput!) { exportContacts(input: $i) {
  job { id kind status processed total downloadUrl startedBy { id } } userErrors { field code message } } }"""
REPORT = """mutation($i: ExportAttributeReportInput!) { exportAttributeReport(input: $i) {
  job { id kind status } userErrors { field code message } } }"""
JOB = """query($id: ID!) { job(id: $id) { id kind status processed total result error downloadUrl cursor
  startedAt finishedAt startedBy { id } } }"""
CANCEL = (
    "mutation($i: CancelJobInput!) { cancelJob(input: $i) { job { id status } userErrors { field code message } } }"
)


async def define(tenant: Tenant, key: str, kind: str, options: list[str] | None = None) -> None:
    doc = """mutation($i: CreateAttributeDefinitionInput!) { createAttributeDefinition(input: $i) {
      attributeDefinition { id } userErrors { field code message } } }"""
    result = await tenant.api(
        doc, {"i": {"key": key, "label": key.title(), "type": kind, "options": options}}, token=tenant.owner_token
    )
    assert result["createAttributeDefinition"]["userErrors"] == []


async def start(tenant: Tenant, token: str | None = None, **input: Any) -> dict[str, Any]:
    payload = (await tenant.api(EXPORT, {"i": input}, token=token or tenant.owner_token))["exportContacts"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload["job"]  # type: ignore[no-any-return]


async def run(app: Any, job_gid: str) -> dict[str, Any] | None:
    """What the worker does with the queued job, here."""
    return await export_contacts({"hub": app.state.hub}, pk(job_gid))


async def job_of(tenant: Tenant, gid: str, token: str | None = None) -> dict[str, Any]:
    return (await tenant.api(JOB, {"id": gid}, token=token or tenant.owner_token))["job"]  # type: ignore[no-any-return]


async def download(client: httpx.AsyncClient, url: str, token: str | None = None) -> httpx.Response:
    parts = urlsplit(url)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.get(f"{parts.path}?{parts.query}", headers=headers)


def rows_of(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


# -- queuing -----------------------------------------------------------------------------------


async def test_an_export_is_a_queued_job_its_starter_can_follow(tenant: Tenant) -> None:
    job = await start(tenant, columns=["email"])
    assert job["kind"] == "EXPORT" and job["status"] == "QUEUED" and job["downloadUrl"] is None
    assert job["startedBy"] == {"id": str(GlobalID("Agent", str(tenant.owner.id)))}
    listed = await tenant.api("{ jobs(kind: EXPORT) { edges { node { id status } } } }", token=tenant.owner_token)
    assert listed["jobs"]["edges"][0]["node"] == {"id": job["id"], "status": "QUEUED"}
    assert (
        await tenant.api(
            "query($id: ID!) { node(id: $id) { __typename id } }", {"id": job["id"]}, token=tenant.owner_token
        )
    )["node"] == {"__typename": "Job", "id": job["id"]}


async def test_bad_columns_and_addresses_are_user_errors_naming_the_input(tenant: Tenant) -> None:
    await define(tenant, "plan", "TEXT")
    i = {
        "columns": ["email", "password_hash", "attribute.plan", "attribute.nope", "email"],
        "emailTo": ["ada@example.com", "nope"],
    }
    errors = (await tenant.api(EXPORT, {"i": i}, token=tenant.owner_token))["exportContacts"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        (["columns", "1"], "UNKNOWN_FIELD"),
        (["columns", "3"], "UNKNOWN_FIELD"),
        (["columns", "4"], "INVALID"),
        (["emailTo", "1"], "INVALID"),
    ]
    assert "password_hash" in errors[0]["message"]
    errors = (await tenant.api(EXPORT, {"i": {"columns": []}}, token=tenant.owner_token))["exportContacts"][
        "userErrors"
    ]
    assert [(e["field"], e["code"]) for e in errors] == [(["columns"], "REQUIRED")]
    missing = str(GlobalID("Segment", "999999999"))
    errors = (await tenant.api(EXPORT, {"i": {"columns": ["email"], "segmentId": missing}}, token=tenant.owner_token))[
        "exportContacts"
    ]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [(["segmentId"], "NOT_FOUND")]
    listed = await tenant.api("{ jobs { totalCount } }", token=tenant.owner_token)
    assert listed["jobs"]["totalCount"] == 0


async def test_exporting_needs_contacts_export(tenant: Tenant, api: Api) -> None:
    _, agent = await tenant.agent("agent")
    _, admin = await tenant.agent("admin")
    job = await start(tenant, columns=["email"])
    errors = await api.errors(EXPORT, {"i": {"columns": ["email"]}}, token=agent)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    # An agent sees no exports at all; an admin sees the owner's.
    assert await job_of(tenant, job["id"], agent) is None
    assert (await tenant.api("{ jobs { totalCount } }", token=agent))["jobs"]["totalCount"] == 0
    assert (await job_of(tenant, job["id"], admin))["id"] == job["id"]
    await start(tenant, admin, columns=["email"])

    create_key = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { secret userErrors { code } } }"
    reader = (
        await tenant.api(create_key, {"i": {"name": "r", "scopes": ["contacts:read"]}}, token=tenant.owner_token)
    )["createApiKey"]["secret"]
    exporter = (
        await tenant.api(
            create_key, {"i": {"name": "e", "scopes": ["contacts:read", "contacts:export"]}}, token=tenant.owner_token
        )
    )["createApiKey"]["secret"]
    errors = await api.errors(EXPORT, {"i": {"columns": ["email"]}}, token=reader)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]
    assert await job_of(tenant, job["id"], reader) is None
    assert (await start(tenant, exporter, columns=["email"]))["startedBy"] is None
    # A contact session has no jobs.
    session = await tenant.api(
        "mutation($i: StartContactSessionInput!) { startContactSession(input: $i) { token } }",
        {"i": {"channelKey": tenant.channel.public_key, "externalId": "visitor-1"}},
    )
    token = session["startContactSession"]["token"]
    assert await job_of(tenant, job["id"], token) is None
    errors = await api.errors("{ jobs { totalCount } }", token=token)
    assert [e["extensions"]["code"] for e in errors] == ["FORBIDDEN"]


async def test_a_queued_export_can_be_cancelled_once(app: Any, tenant: Tenant) -> None:
    job = await start(tenant, columns=["email"])
    payload = (await tenant.api(CANCEL, {"i": {"id": job["id"]}}, token=tenant.owner_token))["cancelJob"]
    assert payload == {"job": {"id": job["id"], "status": "CANCELLED"}, "userErrors": []}
    payload = (await tenant.api(CANCEL, {"i": {"id": job["id"]}}, token=tenant.owner_token))["cancelJob"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["id"], "NOT_ALLOWED")]
    # The worker then finds nothing to do.
    assert await run(app, job["id"]) is None
    found = await job_of(tenant, job["id"])
    assert (found["status"], found["startedAt"], found["downloadUrl"]) == ("CANCELLED", None, None)


async def test_jobs_are_listed_newest_first_and_filtered(app: Any, tenant: Tenant) -> None:
    first = await start(tenant, columns=["email"])
    second = await start(tenant, columns=["name"])
    await run(app, first["id"])
    listed = await tenant.api(
        "{ jobs(first: 1) { edges { node { id } } pageInfo { hasNextPage endCursor } } }", token=tenant.owner_token
    )
    assert [e["node"]["id"] for e in listed["jobs"]["edges"]] == [second["id"]]
    after = listed["jobs"]["pageInfo"]["endCursor"]
    rest = await tenant.api(
        "query($a: String) { jobs(after: $a) { edges { node { id } } } }", {"a": after}, token=tenant.owner_token
    )
    assert [e["node"]["id"] for e in rest["jobs"]["edges"]] == [first["id"]]
    done = await tenant.api("{ jobs(status: SUCCEEDED) { edges { node { id } } } }", token=tenant.owner_token)
    assert [e["node"]["id"] for e in done["jobs"]["edges"]] == [first["id"]]
    none = await tenant.api("{ jobs(kind: SYNC) { totalCount } }", token=tenant.owner_token)
    assert none["jobs"]["totalCount"] == 0


# -- the file ------------------------------------------------------------------------------------


async def test_the_csv_has_a_header_every_column_and_neutralised_formulas(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await define(tenant, "plan", "LIST", ["gold", "silver"])
    await define(tenant, "seats", "NUMBER")
    await define(tenant, "trial", "BOOLEAN")
    await define(tenant, "renews", "DATE")
    await define(tenant, "note", "TEXT")
    ada = await tenant.contact(
        name='Zoë Ådahl, "the" first',
        email="ada@example.com",
        phone="+33612345678",
        city="Saint-Étienne",
        vip=True,
        tags=["vip", "beta"],
        attributes=[
            {"key": "plan", "value": "gold"},
            {"key": "seats", "value": -5},
            {"key": "trial", "value": True},
            {"key": "renews", "value": "2027-01-31"},
            {"key": "note", "value": '=HYPERLINK("http://evil","x")'},
        ],
    )
    bob = await tenant.contact(
        name="@bob",
        email="bob@example.com",
        city="-Lyon\nnord",
        attributes=[
            {"key": "seats", "value": 2.5},
            {"key": "trial", "value": False},
            {"key": "note", "value": "+1 line\r\nnext"},
        ],
    )
    columns = [
        "id",
        "name",
        "email",
        "phone",
        "city",
        "vip",
        "blocked",
        "sms_consent",
        "tags",
        "created_at",
        "gdpr_consent_at",
        "attribute.plan",
        "attribute.seats",
        "attribute.trial",
        "attribute.renews",
        "attribute.note",
    ]
    job = await start(tenant, columns=columns)
    result = await run(app, job["id"])
    assert result is not None and result["rows"] == 2

    found = await job_of(tenant, job["id"])
    assert found["status"] == "SUCCEEDED" and found["error"] is None
    assert (found["processed"], found["total"]) == (2, 2)
    assert found["result"] == {"rows": 2, "bytes": result["bytes"], "columns": len(columns)}
    assert found["downloadUrl"].startswith("http://127.0.0.1:8000/exports/")
    rows = rows_of(await download(client, found["downloadUrl"]))
    assert rows[0] == columns
    by_id = {row[0]: dict(zip(columns, row, strict=True)) for row in rows[1:]}
    assert list(by_id) == [ada["id"], bob["id"]]
    a, b = by_id[ada["id"]], by_id[bob["id"]]
    assert a["name"] == 'Zoë Ådahl, "the" first' and a["city"] == "Saint-Étienne"
    assert a["phone"] == "'+33612345678"
    assert (a["vip"], a["blocked"], a["sms_consent"], a["tags"]) == ("true", "false", "never", "beta, vip")
    assert a["created_at"].endswith("Z") and len(a["created_at"]) == 20 and a["gdpr_consent_at"] == ""
    assert (a["attribute.plan"], a["attribute.seats"], a["attribute.trial"], a["attribute.renews"]) == (
        "gold",
        "-5",
        "true",
        "2027-01-31",
    )
    assert a["attribute.note"] == '\'=HYPERLINK("http://evil","x")'
    assert (b["name"], b["city"], b["tags"]) == ("'@bob", "'-Lyon\nnord", "")
    assert (b["attribute.plan"], b["attribute.seats"], b["attribute.trial"], b["attribute.note"]) == (
        "",
        "2.5",
        "false",
        "'+1 line\r\nnext",
    )


async def test_a_segment_export_has_its_members_only(app: Any, client: httpx.AsyncClient, tenant: Tenant) -> None:
    for city in ("Lyon", "Lyon", "Paris"):
        await tenant.contact(name=f"In {city}", city=city)
    made = await tenant.api(
        "mutation($i: CreateSegmentInput!) { createSegment(input: $i) { segment { id } } }",
        {
            "i": {
                "name": "Lyon",
                "rules": {
                    "match": "ALL",
                    "conditions": [{"field": "city", "operator": "EQUALS", "value": {"text": "Lyon"}}],
                },
            }
        },
        token=tenant.owner_token,
    )
    segment = made["createSegment"]["segment"]["id"]
    await refresh_segment({}, pk(segment))
    job = await start(tenant, columns=["name", "city"], segmentId=segment)
    await run(app, job["id"])
    found = await job_of(tenant, job["id"])
    assert (found["processed"], found["total"]) == (2, 2)
    assert rows_of(await download(client, found["downloadUrl"])) == [
        ["name", "city"],
        ["In Lyon", "Lyon"],
        ["In Lyon", "Lyon"],
    ]


async def test_the_attribute_report_has_every_attribute_in_order(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await define(tenant, "plan", "TEXT")
    await define(tenant, "seats", "NUMBER")
    defs = await tenant.api("{ attributeDefinitions(first: 100) { edges { node { key } } } }", token=tenant.owner_token)
    keys = [e["node"]["key"] for e in defs["attributeDefinitions"]["edges"]]
    assert keys[-2:] == ["plan", "seats"]
    contact = await tenant.contact(
        name="Ada",
        email="ada@example.com",
        externalId="crm-1",
        attributes=[{"key": "plan", "value": "pro"}, {"key": "seats", "value": 3}],
    )
    payload = (await tenant.api(REPORT, {"i": {}}, token=tenant.owner_token))["exportAttributeReport"]
    assert payload["userErrors"] == [] and payload["job"]["kind"] == "ATTRIBUTE_REPORT"
    await run(app, payload["job"]["id"])
    found = await job_of(tenant, payload["job"]["id"])
    response = await download(client, found["downloadUrl"])
    assert f"attribute-report-{pk(found['id'])}.csv" in response.headers["content-disposition"]
    header, *rows = rows_of(response)
    assert header == ["id", "external_id", "name", "email", *(f"attribute.{k}" for k in keys)]
    assert rows == [[contact["id"], "crm-1", "Ada", "ada@example.com", *([""] * (len(keys) - 2)), "pro", "3"]]
    columns = (await tenant.api("{ exportColumns }", token=tenant.owner_token))["exportColumns"]
    assert columns[:2] == ["id", "name"] and columns[-2:] == ["attribute.plan", "attribute.seats"]


# -- the download link -------------------------------------------------------------------------


async def test_the_download_link_is_signed_expiring_and_bound_to_its_workspace(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, make_tenant: Any
) -> None:
    await tenant.contact(name="Ada")
    job = await start(tenant, columns=["name"])
    await run(app, job["id"])
    url = (await job_of(tenant, job["id"]))["downloadUrl"]
    ws, job_id = tenant.workspace.id, pk(job["id"])
    response = await download(client, url)
    assert rows_of(response) == [["name"], ["Ada"]]
    assert response.headers["cache-control"] == "private, no-store"
    assert response.headers["content-disposition"] == f'attachment; filename="contacts-{job_id}.csv"'

    parts = urlsplit(url)
    query = dict(p.split("=") for p in parts.query.split("&"))
    forged = [
        f"/exports/{ws}/{job_id}?expires={query['expires']}&signature={'0' * 64}",
        f"/exports/{ws}/{job_id}?expires={int(query['expires']) + 1}&signature={query['signature']}",
        f"/exports/{ws + 1}/{job_id}?{parts.query}",
        f"/exports/{ws}/{job_id + 1}?{parts.query}",
        f"/exports/{ws}/{job_id}?expires={query['expires']}",
        f"/exports/{ws}/{job_id}",
        f"/exports/{ws}/{job_id}?expires=soon&signature={query['signature']}",
        urlsplit(signed_url(ws, job_id, now=time.time() - 10**6)).path
        + "?"
        + urlsplit(signed_url(ws, job_id, now=time.time() - 10**6)).query,
    ]
    for path in forged:
        response = await client.get(path)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "FORBIDDEN"

    # With credentials: another workspace's principal is told there is no such export.
    other = await make_tenant("Other")
    for token in (other.owner_token, other.api_key):
        response = await download(client, url, token)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    _, agent = await tenant.agent("agent")
    assert (await download(client, url, agent)).status_code == 403
    assert (await download(client, url, "not-a-token")).status_code == 401
    assert rows_of(await download(client, url, tenant.owner_token)) == [["name"], ["Ada"]]
    assert rows_of(await download(client, url, tenant.api_key)) == [["name"], ["Ada"]]

    # A valid signature for something that is not a finished export: 404.
    queued = await start(tenant, columns=["name"])
    assert (await download(client, signed_url(ws, pk(queued["id"])))).status_code == 404
    assert (await download(client, signed_url(ws, 10**9))).status_code == 404


async def test_the_link_can_be_emailed(app: Any, client: httpx.AsyncClient, tenant: Tenant, smtp_settings: Any) -> None:
    await tenant.contact(name="Ada")
    job = await start(tenant, columns=["name"], emailTo=["Boss@Example.com", "ops@example.com"])
    await run(app, job["id"])
    [mail] = await smtp_settings.sink.wait_for(1)
    assert sorted(mail.envelope_to) == ["boss@example.com", "ops@example.com"]
    assert mail.message["Subject"] == "Your contact export is ready"
    [link] = [line for line in mail.text.splitlines() if "/exports/" in line]
    assert rows_of(await download(client, link)) == [["name"], ["Ada"]]
    found = await job_of(tenant, job["id"])
    assert found["status"] == "SUCCEEDED" and found["result"]["emailed"] is True


async def test_an_unsent_email_does_not_fail_the_export(app: Any, tenant: Tenant, smtp_settings: Any) -> None:
    smtp_settings.sink.fail_next(5, "554 5.7.1 Rejected")
    job = await start(tenant, columns=["name"], emailTo=["boss@example.com"])
    await run(app, job["id"])
    found = await job_of(tenant, job["id"])
    assert found["status"] == "SUCCEEDED" and found["downloadUrl"] is not None
    assert found["result"]["emailed"] is False and "refused" in found["result"]["emailError"]


async def test_old_files_are_pruned_and_dead_runs_failed(app: Any, client: httpx.AsyncClient, tenant: Tenant) -> None:
    from datetime import UTC, datetime, timedelta

    from jobs.exports import EXPORT_TIMEOUT, prune_exports
    from models.job_records import Job
    from services.job_records import JobTracker

    await tenant.contact(name="Ada")
    old, fresh, stuck = [await start(tenant, columns=["name"]) for _ in range(3)]
    for job in (old, fresh):
        await run(app, job["id"])
    url = (await job_of(tenant, old["id"]))["downloadUrl"]
    long_ago = datetime.now(UTC) - timedelta(days=30)
    await Job.filter(id=pk(old["id"])).update(finished_at=long_ago)
    assert await JobTracker.begin(pk(stuck["id"]), None) is not None  # then its worker dies
    await Job.filter(id=pk(stuck["id"])).update(started_at=datetime.now(UTC) - timedelta(seconds=4 * EXPORT_TIMEOUT))

    assert await prune_exports({}) >= 1
    assert (await job_of(tenant, old["id"]))["downloadUrl"] is None
    assert (await download(client, url)).status_code == 404
    assert (await job_of(tenant, fresh["id"]))["downloadUrl"] is not None
    dead = await job_of(tenant, stuck["id"])
    assert dead["status"] == "FAILED" and "stopped" in dead["error"]


# -- erasure -------------------------------------------------------------------------------------


async def test_an_export_older_than_a_deletion_is_gone_even_if_the_deleting_process_died(
    app: Any, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    """deleteContact removes the files after its commit; had its process died there, the
    link already answers 410 and the hourly prune_exports removes the file."""
    from jobs.exports import prune_exports
    from models.contacts import DeletedContact
    from services.exports import ERASURE_MARGIN, export_path

    await tenant.contact(name="Kept", email="kept@example.com")
    job = await start(tenant, columns=["email"])
    await run(app, job["id"])
    link = (await job_of(tenant, job["id"]))["downloadUrl"]
    assert (await download(client, link)).status_code == 200
    # What a deletion that died right after its commit leaves: the record, and the file.
    await DeletedContact.create(workspace_id=tenant.workspace.id, deleted_by_name="Olive Owner")
    gone = await download(client, link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "GONE"
    assert export_path(tenant.workspace.id, pk(job["id"])).is_file()
    await prune_exports({})
    assert not export_path(tenant.workspace.id, pk(job["id"])).is_file()
    # An export made after the deletion (more than ERASURE_MARGIN after it) is served, and the sweep leaves it alone.
    await DeletedContact.filter(workspace_id=tenant.workspace.id).update(
        deleted_at=datetime.now(UTC) - ERASURE_MARGIN - timedelta(seconds=1)
    )
    later = await start(tenant, columns=["email"])
    await run(app, later["id"])
    await prune_exports({})
    fresh = await download(client, (await job_of(tenant, later["id"]))["downloadUrl"])
    assert fresh.status_code == 200 and "kept@example.com" in fresh.text


async def test_an_export_running_while_a_contact_is_deleted_fails_and_keeps_no_file(
    app: Any, tenant: Tenant, monkeypatch: Any
) -> None:
    import jobs.exports as export_job
    from models.contacts import DeletedContact
    from services.exports import ERASED_MESSAGE, export_path

    await tenant.contact(name="Gone soon", email="gone@example.com")
    job = await start(tenant, columns=["email"])
    write_csv = export_job.write_csv

    async def deleted_meanwhile(*args: Any, **kwargs: Any) -> int:
        rows = await write_csv(*args, **kwargs)
        await DeletedContact.create(workspace_id=tenant.workspace.id, deleted_by_name="Olive Owner")
        return rows

    monkeypatch.setattr(export_job, "write_csv", deleted_meanwhile)
    await run(app, job["id"])
    state = await job_of(tenant, job["id"])
    assert (state["status"], state["error"], state["downloadUrl"]) == ("FAILED", ERASED_MESSAGE, None)
    assert not any(export_path(tenant.workspace.id, pk(job["id"])).parent.glob(f"{pk(job['id'])}.csv*"))


async def test_an_export_that_read_a_contact_before_its_deletion_committed_is_gone(
    app: Any, tenant: Tenant, client: httpx.AsyncClient, monkeypatch: Any
) -> None:
    """deleteContact stamps its record before its commit, on its own clock: an export that
    started after that stamp may still have read the contact. Here the deleting process's
    clock is 5 seconds behind the worker's (the same as a commit landing 5 seconds after
    the stamp): the export holds the contact, its file is removed, its link answers 410."""
    import resolvers.contacts as contacts
    from models.job_records import Job
    from services.exports import export_path

    doomed = await tenant.contact(name="Late Commit", email="late@example.com")
    job = await start(tenant, columns=["email"])
    await run(app, job["id"])
    link = (await job_of(tenant, job["id"]))["downloadUrl"]
    assert "late@example.com" in (await download(client, link)).text
    started_at = (await Job.get(id=pk(job["id"]))).started_at
    assert started_at is not None
    monkeypatch.setattr(contacts, "now", lambda: started_at - timedelta(seconds=5))
    deleted = await tenant.api(
        "mutation($i: ContactIdInput!) { deleteContact(input: $i) { "
        "auditRecord { erased { kind count } } userErrors { code } } }",
        {"i": {"id": doomed["id"]}},
        token=tenant.owner_token,
    )
    erased = {e["kind"]: e["count"] for e in deleted["deleteContact"]["auditRecord"]["erased"]}
    assert erased["exportFiles"] == 1
    assert not export_path(tenant.workspace.id, pk(job["id"])).is_file()
    gone = await download(client, link)
    assert gone.status_code == 410 and "late@example.com" not in gone.text
