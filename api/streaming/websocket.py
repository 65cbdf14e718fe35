"""Limits on what a WebSocket client may send: one small hello, `{"from": N}`, and nothing after it.

simple_websocket's reader thread closes a socket with 1009 once a message passes
max_message_size (create_app sets it), so an oversized frame is never held whole. Messages the
relay never reads would pile up in its input buffer; guard_inbox bounds that buffer.
"""

from __future__ import annotations

import json
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024
HELLO_TIMEOUT_S = 0.3  # how long a WebSocket waits for an optional {"from": N} before streaming
MAX_BUFFERED = 4  # unread client messages kept before the socket counts as misbehaving


class HelloError(ValueError):
    """The first message is not `{"from": N}`."""


class BoundedInbox(list[Any]):
    """simple_websocket's input buffer, capped: past MAX_BUFFERED unread messages it drops them and
    says so in `overflowed`."""

    overflowed = False

    def append(self, item: Any) -> None:
        if len(self) >= MAX_BUFFERED:
            self.overflowed = True
            return
        super().append(item)


def guard_inbox(ws: Any) -> BoundedInbox:
    """Bound a socket's input buffer (before its reader thread stores anything in it)."""
    old = ws.input_buffer
    inbox = BoundedInbox(old)
    ws.input_buffer = inbox
    for item in old[len(inbox) :]:  # arrived while the buffers were swapped
        inbox.append(item)
    return inbox


def read_hello(ws: Any) -> str | None:
    """The `from` of the optional first message as text (None when none came in time); HelloError
    when it is not a JSON object with an integer `from`."""
    raw = ws.receive(timeout=HELLO_TIMEOUT_S)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raise HelloError('the first message must be text: {"from": N}')
    try:
        hello = json.loads(raw)
    except (ValueError, RecursionError):
        raise HelloError("the first message is not JSON") from None
    if (
        not isinstance(hello, dict)
        or not isinstance(hello.get("from", -1), int)
        or isinstance(hello.get("from"), bool)
    ):
        raise HelloError('the first message must be {"from": N} with N an integer')
    return str(hello.get("from", -1))
