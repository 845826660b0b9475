"""An export larger than its memory budget: 50,000 contacts, whose CSV is several times
the budget, written while the export task's Python allocations (tracemalloc's peak,
measured around the task alone) stay under it."""

from __future__ import annotations

import csv
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from strawberry.relay import GlobalID

from core.config import settings
from models.contacts import AttributeDefinition, Contact, ContactTag
from services.exports import export_path
from tests.conftest import Tenant
from tests.exports.test_exports import job_of, pk, run, start

ROWS = 50_000
BUDGET = 3_000_000  # bytes of Python memory the export may hold at its peak
COLUMNS = ["id", "name", "email", "city", "referrer", "vip", "tags", "last_seen_at", "attribute.plan", "attribute.note"]


def referrer(i: int) -> str:
    return f"https://news.example.com/articles/{i}/a-rather-long-headline-about-customer-messaging?utm_source=newsletter&n={i}"


async def test_an_export_bigger_than_its_memory_budget(
    app: Any, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tenant.workspace.id
    await AttributeDefinition.create(workspace_id=ws, key="plan", label="Plan", type="list", options=["free", "pro"])
    await AttributeDefinition.create(workspace_id=ws, key="note", label="Note", type="text")
    now = datetime.now(UTC)
    for start_at in range(0, ROWS, 5000):
        await Contact.bulk_create(
            [
                Contact(
                    workspace_id=ws,
                    name=f"Contact {i:05}",
                    email=f"contact{i}@example.com",
                    city="-Nord" if i % 1000 == 0 else f"City {i % 97}",
                    referrer=referrer(i),
                    vip=i % 10 == 0,
                    attributes={
                        "plan": "pro" if i % 3 else "free",
                        "note": f"@note {i}" if i % 7 == 0 else f"note {i}",
                    },
                    first_seen_at=now,
                    last_seen_at=now,
                )
                for i in range(start_at, start_at + 5000)
            ]
        )
    ids = await Contact.filter(workspace_id=ws).order_by("id").values_list("id", flat=True)
    await ContactTag.bulk_create([ContactTag(workspace_id=ws, contact_id=cid, name="trial") for cid in ids[::5]])
    monkeypatch.setattr(settings, "export_batch_size", 1000)

    job = await start(tenant, columns=COLUMNS)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await run(app, job["id"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result is not None and result["rows"] == ROWS
    path = export_path(ws, pk(job["id"]))
    size = path.stat().st_size
    # The file would not fit the budget, the export did.
    assert size > 3 * BUDGET, size
    assert peak < BUDGET, f"peak {peak:,} bytes for a {size:,}-byte file"
    found = await job_of(tenant, job["id"])
    assert (found["status"], found["processed"], found["total"]) == ("SUCCEEDED", ROWS, ROWS)

    # And the content is all there, in order (read back as a stream, not measured).
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == COLUMNS
        count = 0
        for i, (row, cid) in enumerate(zip(reader, ids, strict=True)):
            assert row[0] == str(GlobalID("Contact", str(cid)))
            assert row[1:6] == [
                f"Contact {i:05}",
                f"contact{i}@example.com",
                "'-Nord" if i % 1000 == 0 else f"City {i % 97}",
                referrer(i),
                "true" if i % 10 == 0 else "false",
            ]
            assert row[6] == ("trial" if i % 5 == 0 else "")
            assert row[7].endswith("Z")
            assert row[8:] == ["pro" if i % 3 else "free", f"'@note {i}" if i % 7 == 0 else f"note {i}"]
            count += 1
    assert count == ROWS
