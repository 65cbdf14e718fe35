"""What clients may read of an error: no absolute paths, addresses or URLs of the server's own, and no
exception class names. The full message stays in the log; the client gets this one."""

from __future__ import annotations

import re

# An absolute path (two components at least), a URL with a host, or a host:port pair.
_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.@+-]+/)+[\w.@+-]*")
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_HOST_PORT = re.compile(
    r"\b(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+):\d{2,5}\b", re.I
)


def redact(message: str, keep: tuple[str, ...] = ()) -> str:
    """The message with the server's paths and addresses replaced by placeholders; the strings in
    `keep` (what the client itself sent, such as a model name) are left as they are."""
    kept = {f"\x00{i}\x00": k for i, k in enumerate(k for k in keep if k)}
    for marker, text in kept.items():
        message = message.replace(text, marker)
    message = _URL.sub("<url>", message)
    message = _PATH.sub("<path>", message)
    message = _HOST_PORT.sub("<address>", message)
    for marker, text in kept.items():
        message = message.replace(marker, text)
    return message
