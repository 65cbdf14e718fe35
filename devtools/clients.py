"""Small HTTP, SSE and WebSocket clients for the tests, written against the public API only."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
import simple_websocket


@dataclass
class SseEvent:
    event: str
    data: Any
    id: str | None = None


def submit(url: str, **body: Any) -> dict[str, Any]:
    """POST /v1/requests; asserts the 202 and returns its body."""
    return submit_as(url, {}, **body)


def submit_as(url: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    """POST /v1/requests with headers (an API key); asserts the 202 and returns its body."""
    resp = requests.post(f"{url}/v1/requests", json=body, headers=headers, timeout=10)
    assert resp.status_code == 202, resp.text
    result: dict[str, Any] = resp.json()
    return result


def iter_sse(lines: Any) -> Iterator[SseEvent]:
    """Events of an SSE response (comments skipped), each as soon as its blank line arrives."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if line == "":
            if "data" in fields:
                yield SseEvent(fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def parse_sse(lines: Any) -> list[SseEvent]:
    """Events of an SSE response (comments skipped), in order, until the server closes."""
    return list(iter_sse(lines))


def read_sse(url: str, method: str = "GET", timeout: float = 60, **kwargs: Any) -> list[SseEvent]:
    with requests.request(method, url, stream=True, timeout=timeout, **kwargs) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        return parse_sse(resp.iter_lines(decode_unicode=False, delimiter=b"\n"))


class WsClient(simple_websocket.Client):
    """simple_websocket's client, minus a race: frames that arrive in the same read as the handshake's
    answer (a server that sends an error and closes at once) stay in wsproto's buffer, and the reader
    thread handles buffered frames only after its next read, which a closed socket never gives; the
    client then reports a close without status (1005) and loses the message. Handle them at once."""

    def _thread(self) -> None:
        self.connected = self._handle_events()  # whatever came in with the handshake's answer
        super()._thread()  # reads on while connected, then closes the socket


def connect_ws(ws_url: str, headers: dict[str, str] | None = None) -> WsClient:
    """A connected WebSocket client (see WsClient)."""
    client: WsClient = WsClient.connect(ws_url, headers=headers)
    return client


def read_ws(ws_url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every message of a WebSocket until the server closes it."""
    ws = connect_ws(ws_url, headers=headers)
    messages = []
    try:
        while True:
            msg = ws.receive(timeout=timeout)
            if msg is None:
                raise TimeoutError("no WebSocket message within the timeout")
            messages.append(json.loads(msg))
            if messages[-1]["event"] != "token":
                break
    except simple_websocket.ConnectionClosed:
        pass
    finally:
        with contextlib.suppress(simple_websocket.ConnectionClosed, OSError):  # the server may close first
            ws.close()
    return messages


def indexed(events: list[SseEvent]) -> list[SseEvent]:
    """The stored events (token, done, error), without the relay's own `queued` and `ttft` messages."""
    return [e for e in events if e.id is not None]


def stream_text(events: list[SseEvent]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "token")
