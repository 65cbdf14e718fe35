"""Whether this API process is stopping. gunicorn's SIGTERM lets open connections finish for its graceful
timeout and then cuts them; a stream does not finish by itself, so each one checks this flag (at least
once a second) and ends early with a `reconnect` event that says where to resume. The client reconnects,
with Last-Event-ID, to another API process or to this server once it is back, and misses nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

RECONNECT = "reconnect"
_stopping = False


def is_stopping() -> bool:
    return _stopping


def mark_stopping() -> None:
    global _stopping
    _stopping = True


def on_sigterm_mark_stopping() -> None:
    """Chain onto the process's SIGTERM handler (gunicorn's graceful stop): mark stopping, then let it run."""
    previous: Any = signal.getsignal(signal.SIGTERM)

    def handler(sig: int, frame: Any) -> None:
        mark_stopping()
        if callable(previous):
            chained: Callable[[int, Any], None] = previous
            chained(sig, frame)

    signal.signal(signal.SIGTERM, handler)


def reconnect_message(resume_url: str | None = None, last_index: int | None = None) -> dict[str, Any]:
    """The payload of the `reconnect` event a stream ends with when its API process stops."""
    message = "this API process is stopping: reconnect with Last-Event-ID to resume"
    payload: dict[str, Any] = {"message": message}
    if last_index is not None:
        payload["last_index"] = last_index
    if resume_url is not None:
        payload["resume_url"] = resume_url
    return payload
