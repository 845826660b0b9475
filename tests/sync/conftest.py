"""CRM sync tests read the change log as soon as they write it: no settling delay."""

from __future__ import annotations

from datetime import timedelta

import pytest


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from resolvers import sync

    monkeypatch.setattr(sync, "SETTLE", timedelta(0))
