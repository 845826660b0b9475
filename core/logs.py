"""One logging setup for the API, the worker and the CLI: every line carries its time,
level, logger and the request (or job) it belongs to.

    from core.logs import setup_logging, log_fields
    setup_logging()                    # asgi.py at start-up, the worker's on_startup
    log_fields()["workspace"] = 7      # runtime/http.py: this request's lines say so too

LOG_FORMAT `json` (the default when ENV=prod) writes one JSON object a line (python-json-logger):

    {"time": "2026-12-07T21:14:03.512Z", "level": "WARNING", "logger": "parley.errors",
     "message": "...", "request_id": "9f2c…", "operation": "Inbox", "principal": "agent",
     "workspace": 7}

`text` (the default in dev) writes the same fields readably. uvicorn's and arq's loggers
are routed through the same handler (their own handlers are removed), so access lines and
job lines carry the request id or the job id as well.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from core.errors import request_id_var

# What a request (or a job) adds to each of its lines: operation, principal, workspace, job.
# Set once per request to a fresh dict (RequestIdMiddleware) and filled in as they are known;
# tasks the request starts copy the context, and so see the same dict.
_fields_var: ContextVar[dict[str, Any] | None] = ContextVar("log_fields", default=None)

# Loggers of the libraries we run under: their own handlers are replaced by ours.
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "arq.jobs", "arq.connections")


def start_log_fields() -> dict[str, Any]:
    """A fresh set of fields for the request (or job) the current task now serves."""
    fields: dict[str, Any] = {}
    _fields_var.set(fields)
    return fields


def log_fields() -> dict[str, Any]:
    """The current request's (or job's) fields: add to them and its later lines carry them."""
    fields = _fields_var.get()
    return fields if fields is not None else start_log_fields()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.fields = _fields_var.get() or {}
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger's, with our field names: time (UTC, milliseconds), level, logger,
    message, the request id, the request's fields, then the exception when there is one.
    Other `extra=` fields a call passes are written too (uvicorn's `color_message` is not)."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            reserved_attrs=[*RESERVED_ATTRS, "request_id", "fields", "color_message"],
            json_default=str,
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = _timestamp(record)
        super().add_fields(log_data, record, message_dict)
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            log_data["request_id"] = request_id
        log_data.update(getattr(record, "fields", {}))
        if "exception" in log_data:
            log_data["exception"] = log_data.pop("exception")  # last, after the request's fields


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        request_id = getattr(record, "request_id", "-")
        text = (
            f"{_timestamp(record)} {record.levelname:<7} {record.name} "
            f"[{request_id}{' ' + context if context else ''}] {record.getMessage()}"
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _ParleyHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, told apart from other handlers on the root logger (pytest's, for one)."""


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configures the root logger (LOG_LEVEL, LOG_FORMAT) with one handler on stderr, and
    hands uvicorn's and arq's loggers to it. Idempotent: called again, it replaces itself."""
    from core.config import settings

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ParleyHandler)]:
        root.removeHandler(handler)
    handler = _ParleyHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if (fmt or settings.log_style) == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root.addHandler(handler)
    root.setLevel((level or settings.log_level).upper())
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
