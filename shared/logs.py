"""Log lines for people (text, the default) or for log pipelines (LOG_FORMAT=json: one JSON object a line).

Every line about a request carries its `request_id`, whichever process writes it: the API binds
the id while it handles the request, a Celery task while it runs (the task id is the request id),
and the engine loop passes it with each line (`extra=about(request_id)`). Celery's own lines
about a task ("received", "succeeded") name it by task id, which is the request id: the filter
lifts it out of their arguments.

A line is one record: control characters in what a record says (a request id from a URL, a refused
value) are escaped in text mode, so nobody can forge a line by sending a newline; JSON escapes them
itself. The access log never holds a secret: a key sent in the query string is redacted.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s%(request_suffix)s"
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each would start a new line or
# rewrite the terminal showing the log.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A secret in a URL's query (?api_key=..., &token=...), and anything shaped like one of our keys.
_QUERY_SECRET = re.compile(
    r"([?&](?:api[_-]?key|key|token|access[_-]?token|secret|password|auth)=)[^&\s\"]*", re.IGNORECASE
)
_KEY_SHAPED = re.compile(r"\btw-[A-Za-z0-9_-]{8,}")
# The attributes every LogRecord has: anything else on a record came from `extra=` and goes in the JSON.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_suffix"}


def escape(text: str) -> str:
    """The text with every control character written as an escape (a newline as \\n): one line stays one."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def clip(value: object, limit: int = 200) -> str:
    """A value a client supplied, fit for a log line: escaped, and cut to `limit` characters."""
    text = escape(str(value))
    return text if len(text) <= limit else f"{text[:limit]}...(+{len(text) - limit} chars)"


def redact_secrets(text: str) -> str:
    """The text with query-string secrets and key-shaped strings replaced by <redacted>."""
    return _KEY_SHAPED.sub("<redacted>", _QUERY_SECRET.sub(r"\1<redacted>", text))


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
        if rid is not None:
            rid = clip(rid, 100)  # it may come from a URL
        record.request_id = rid
        record.request_suffix = f" [request_id={rid}]" if rid else ""
        return True


class RedactFilter(logging.Filter):
    """Take secrets out of a record's message (the access log's request line and referrer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_secrets(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class TextFormatter(logging.Formatter):
    """The text format, with control characters in the message escaped (a traceback keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


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
    return JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT)


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
