"""Prometheus metrics of the API and the worker (prometheus_client), right under several
processes.

    from core.metrics import observe_request, observe_job, exposition
    observe_request("query", "Inbox", "agent", "ok", 0.012)  # runtime/http.py, once a request
    RATE_LIMITED.labels("login-ip").inc()           # core/ratelimit.py, once a refusal
    with OPEN_SOCKETS.track_inprogress(): ...       # runtime/websocket.py, while it is open
    observe_job("send_campaign", "ok", 3.2)         # jobs/worker.py, once a job
    body, content_type = exposition()               # GET /metrics

With PROMETHEUS_MULTIPROC_DIR set (before this module is imported: prometheus_client
reads it then), each process writes its samples to files there and a scrape of any API
process adds up every process's, the worker's too when it shares the directory.
`parley api --workers N` (N > 1) and `parley run` make a fresh directory for their
processes when it is unset (`multiprocess_env`); without it, a process reports its own.
The worker also serves them on WORKER_METRICS_PORT when that is set.

The gauges of open WebSockets and running subscriptions are summed over the live
processes ("livesum"): a process forgets its own at shutdown (`forget_process`); one that
was killed leaves its last values until the directory is emptied (each start does).

Labels are bounded sets: operation types, outcomes, error codes (unknown ones count as
OTHER), job function names, rate limit names (fixed in the code). Operation names are the
clients' choice, so only the names sent by agents and API keys are labels, at most
OPERATION_NAMES_MAX distinct ones a process; later ones, names longer than
OPERATION_NAME_MAX_LENGTH characters and names that are not GraphQL names count as
"other", a request without an operationName as "anonymous". Requests of contact sessions
and of nobody (anyone holding a public widget key) all count as "public": a stranger who
sends 200 made-up names must not push the inbox's own operations into "other".
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import REGISTRY

from core.errors import Code

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # prometheus_client writes there at a metric's first sample: a directory named but not
    # made would fail that request.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})
# Principals whose operation names become labels (core/permissions.py PrincipalKind values).
NAMING_PRINCIPALS = frozenset({"agent", "api_key"})
# Codes of errors that are not in `Code`: the request's own (core/limits.py) and masked ones.
_OTHER_CODES = frozenset({"BAD_REQUEST", "INTERNAL"})
_CODES = frozenset(c.value for c in Code) | _OTHER_CODES
OPERATION_NAMES_MAX = 200
OPERATION_NAME_MAX_LENGTH = 64
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_operation_names: set[str] = set()

REQUEST_SECONDS = Histogram(
    "parley_graphql_request_duration_seconds",
    "GraphQL requests over HTTP: time from the request's arrival to its response, by operation type, operation "
    "name (anonymous without one; other past the cap; public for contacts and unauthenticated requests) and "
    "outcome (ok; error: GraphQL errors in a 2xx response; "
    "refused: a 4xx or 5xx response).",
    ["operation_type", "operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter("parley_graphql_errors_total", "GraphQL errors answered, by extensions.code.", ["code"])
RATE_LIMITED = Counter("parley_rate_limited_total", "Requests a rate limit refused, by the limit's name.", ["limit"])
OPEN_SOCKETS = Gauge(
    "parley_websockets_open",
    "WebSockets open (graphql-transport-ws), over every live process.",
    multiprocess_mode="livesum",
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "parley_subscriptions_active",
    "Operations running over WebSockets (subscriptions, for as long as they last), over every live process.",
    multiprocess_mode="livesum",
)
JOBS = Counter(
    "parley_jobs_total", "Jobs the worker ran, by function and outcome (ok, retried, failed).", ["function", "outcome"]
)
JOB_SECONDS = Histogram(
    "parley_job_duration_seconds",
    "How long jobs ran, by function.",
    ["function"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)


def operation_label(name: object, principal: object) -> str:
    """The label of a request's operation name: itself, "anonymous", "other" or "public"
    (`principal` is the kind of who sent it, None for nobody)."""
    if principal not in NAMING_PRINCIPALS:
        return "public"
    if name is None or name == "":
        return "anonymous"
    if not isinstance(name, str):
        return "other"
    if name in _operation_names:
        return name
    if (
        len(name) > OPERATION_NAME_MAX_LENGTH
        or len(_operation_names) >= OPERATION_NAMES_MAX
        or not _GRAPHQL_NAME.fullmatch(name)
    ):
        return "other"
    _operation_names.add(name)
    return name


def observe_request(
    operation_type: str | None, operation: object, principal: object, outcome: str, seconds: float
) -> None:
    kind = operation_type if operation_type in OPERATION_TYPES else "unknown"
    REQUEST_SECONDS.labels(kind, operation_label(operation, principal), outcome).observe(seconds)


def count_errors(errors: Iterable[Mapping[str, object]]) -> None:
    """Counts a response's errors by their code (a formatted error's `extensions.code`)."""
    for error in errors:
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, Mapping) else None
        ERRORS.labels(code if code in _CODES else "OTHER").inc()


def observe_job(function: str, outcome: str, seconds: float) -> None:
    JOBS.labels(function, outcome).inc()
    JOB_SECONDS.labels(function).observe(seconds)


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> tuple[str, str]:
    """Every process's metrics (this one's alone without a shared directory), as
    Prometheus text, and its content type."""
    return generate_latest(_registry()).decode(), CONTENT_TYPE_LATEST


def serve(port: int) -> None:
    """Serves the metrics on `port` (all addresses) from a thread: the worker's."""
    start_http_server(port, registry=_registry())


def multiprocess_env(env: dict[str, str]) -> str | None:
    """Gives processes started with `env` a fresh shared metrics directory, unless it
    names one already; returns the directory made (the caller removes it), or None."""
    if env.get(MULTIPROC_ENV):
        return None
    path = tempfile.mkdtemp(prefix="parley-metrics-")
    env[MULTIPROC_ENV] = path
    return path


def forget_process() -> None:
    """At a process's shutdown: its live gauges no longer count (a shared directory's)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def remove_multiprocess_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
