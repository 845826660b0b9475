"""Worker settings for bench/jobs.py, which runs them as `arq bench.jobs_worker.Tuned` and
`arq bench.jobs_worker.ArqDefaults`:

- `Tuned`: the project's `jobs.worker.WorkerSettings`, every setting as it is, plus one
  trivial function (`bench_noop`) that exists only here.
- `ArqDefaults`: the same, with the settings jobs.worker tunes put back to the defaults of
  arq's `Worker` (read from its signature, so they are arq's own: poll_delay 0.5 s,
  health_check_interval 3600 s, max_jobs 10, job_timeout 300 s, …).

Not subclasses: arq reads a settings class's own `__dict__` only (`arq.worker.get_kwargs`),
so `class Tuned(WorkerSettings)` would lose redis_settings, queue_name and every tuned
value and connect to redis://localhost:6379 with the default queue. The settings are
copied instead. Import this module only with REDIS_URL and REDIS_PREFIX set for the run
(jobs.worker computes redis_settings and queue_name when it is imported).
"""

from __future__ import annotations

import inspect
import time
from typing import Any

from arq.worker import Worker, get_kwargs

from jobs.worker import WorkerSettings


async def bench_noop(ctx: dict[str, Any]) -> float:
    """A short job: returns the wall-clock time it started (kept in its arq result)."""
    return time.time()


# What jobs.worker sets that arq also has a default for.
TUNED_NAMES = ("poll_delay", "health_check_interval", "max_jobs", "job_timeout", "keep_result", "queue_read_limit")
ARQ_DEFAULTS: dict[str, Any] = {name: inspect.signature(Worker).parameters[name].default for name in TUNED_NAMES}


def _settings(name: str, **overrides: Any) -> type:
    own = get_kwargs(WorkerSettings)
    return type(name, (), {**own, "functions": [*own["functions"], bench_noop], **overrides})


Tuned = _settings("Tuned")
ArqDefaults = _settings("ArqDefaults", **ARQ_DEFAULTS)


def effective(settings: type) -> dict[str, Any]:
    """The values a Worker built from `settings` ends up with, for the bench's table."""
    kwargs = get_kwargs(settings)
    defaults = inspect.signature(Worker).parameters
    values = {name: kwargs.get(name, defaults[name].default) for name in TUNED_NAMES}
    if values["queue_read_limit"] is None:  # arq: max(max_jobs * 5, 100)
        values["queue_read_limit"] = max(values["max_jobs"] * 5, 100)
    return values
