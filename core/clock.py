"""One clock. Code that stamps or compares times in the API and the jobs asks `now()`
(timezone-aware, UTC); a test can stop it, in its own process:

    with frozen(datetime(2026, 11, 23, 9, 0, tzinfo=UTC)):
        ...                                   # every now() answers 09:00

>>> with frozen(datetime(2026, 11, 23, 9, 0, tzinfo=UTC)):
...     now().isoformat()
'2026-11-23T09:00:00+00:00'
>>> now().tzinfo is UTC
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen if _frozen is not None else datetime.now(UTC)


@contextmanager
def frozen(at: datetime) -> Iterator[datetime]:
    """Stop the clock at `at` (timezone-aware) until the block ends."""
    global _frozen
    if at.tzinfo is None:
        raise ValueError("frozen() needs a timezone-aware time")
    previous, _frozen = _frozen, at
    try:
        yield at
    finally:
        _frozen = previous
