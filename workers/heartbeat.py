"""Every few seconds: publish this worker's WorkerInfo and renew its leases, then run the periodic chores.

Built from narrow callables (a snapshot of the worker, the ids it holds leases on, the chores),
so it knows nothing of the runtime that feeds it and can be tested alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence

import redis

from shared import fleet, lifecycle
from shared.messages import WorkerInfo

log = logging.getLogger(__name__)

Snapshot = Callable[[float], WorkerInfo]  # tokens/s over the last interval -> the worker's info now


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Heartbeat:
    def __init__(
        self,
        client: redis.Redis,
        worker_id: str,
        interval_s: float,
        ttl_s: int,
        snapshot: Snapshot,
        tokens_generated: Callable[[], int],
        lease_ids: Callable[[], list[str]],
        chores: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.redis = client
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.snapshot = snapshot
        self.tokens_generated = tokens_generated
        self.lease_ids = lease_ids
        self.chores = list(chores)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._last = (time.monotonic(), 0)  # (when, tokens generated): for tokens/s

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """Publish this worker's info and renew its leases, in one round trip."""
        now, tokens = time.monotonic(), self.tokens_generated()
        then, before = self._last
        rate = max(0, tokens - before) / (now - then) if now > then else 0.0
        self._last = (now, tokens)
        info = self.snapshot(round(rate, 2))
        pipe = self.redis.pipeline(transaction=False)
        fleet.publish_worker(pipe, info, self.ttl_s)
        lifecycle.renew_leases(pipe, self.lease_ids(), self.ttl_s, self.worker_id)
        pipe.execute()

    def stop(self) -> None:
        """Stop beating and remove this worker's record (else it expires within its TTL)."""
        self._stopping.set()
        self._thread.join(timeout=5)
        try:
            fleet.remove_worker(self.redis, self.worker_id)
        except redis.RedisError:
            log.warning("could not remove this worker's heartbeat; it will expire")

    def _run(self) -> None:
        # Beat, then the chores: after a Redis outage this worker renews its own leases before the
        # reaper (a chore) looks for expired ones, so it never requeues a request it is still running.
        while not self._stopping.wait(self.interval_s):
            try:
                self.beat()
                for chore in self.chores:
                    chore()
            except redis.RedisError:
                log.warning("heartbeat failed; retrying", exc_info=True)
