"""Log lines for people (text, the default) or for log pipelines (LOG_FORMAT=json: one JSON object a line).

Every line about a request carries its `request_id`, whichever process writes it: the API binds
the id while it handles the request, a Celery task while it runs (the task id is the request id),
and the engine loop passes it with each line (`extra=about(request_id)`). Celery's own lines
about a task ("received", "succeeded") name it by task id, which is the request id: the filter
lifts it out of their arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s%(request_suffix)s"
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The attributes every LogRecord has: anything else on a record came from `extra=` and goes in the JSON.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_suffix"}


def about(request_id: str) -> dict[str, str]:
    """`extra=` for a line about one request, from a thread that has no request bound."""
    return {"request_id": request_id}


@contextlib.contextmanager
def bound(request_id: str | None) -> Iterator[None]:
    """Lines logged in this block (this thread or greenlet) carry request_id."""
    token = current_request_id.set(request_id)
    try:
        yield
    finally:
        current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Give every record a `request_id` (None when it concerns no request), and the text suffix."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or current_request_id.get()
        if rid is None and record.name.startswith("celery") and isinstance(record.args, dict):
            rid = record.args.get("id")  # celery.app.trace and celery.worker.strategy: the task id
        record.request_id = rid
        record.request_suffix = f" [request_id={rid}]" if rid else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, request_id, any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT ("text" or "json")."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: int | str = logging.INFO) -> None:
    """Send the root logger's lines to stderr in LOG_FORMAT, each carrying its request id."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings are written to stderr as they are; as log records they take the chosen format.
    logging.captureWarnings(True)
