"""gunicorn's gevent worker with a cap on connections per client address (MAX_CONNECTIONS_PER_CLIENT).

Without it, one client with a few hundred idle or slow sockets fills the process's connection cap
(API_THREADS) and everyone else waits. A connection past the cap is answered 429 and closed before
anything is read. Behind a proxy every connection comes from the proxy's address: set the cap to 0
there and let the proxy limit its clients.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

from gunicorn.workers.ggevent import GeventWorker

from shared.settings import get_settings


def _refusal(cap: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"too many open connections from your address (at most {cap}); close some",
                "type": "invalid_request_error",
                "param": None,
                "code": "too_many_connections",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 5\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class GuardedGeventWorker(GeventWorker):
    """A gevent worker that counts open connections per client address and refuses past the cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_per_client = get_settings().max_connections_per_client
        self.open_per_client: Counter[str] = Counter()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        peer = addr[0] if isinstance(addr, tuple) else str(addr)
        if self.max_per_client and self.open_per_client[peer] >= self.max_per_client:
            self.log.warning("refusing a connection from %s: %d already open", peer, self.max_per_client)
            with contextlib.suppress(OSError):
                client.sendall(_refusal(self.max_per_client))
            client.close()
            # Imported here, in the forked process: the master loads this class before any app code.
            from api import telemetry

            telemetry.count_rejected(429, "too_many_connections")
            return
        self.open_per_client[peer] += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self.open_per_client[peer] -= 1
            if not self.open_per_client[peer]:
                del self.open_per_client[peer]
