"""Every few seconds: publish this worker's WorkerInfo and renew its leases, then reap orphaned requests."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import redis

from shared import bus, lifecycle
from workers.recovery import reap

if TYPE_CHECKING:
    from workers.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Heartbeat:
    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._last = (time.monotonic(), 0)  # (when, tokens generated): for tokens/s

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """Publish this worker's info and renew its leases, in one round trip."""
        rt = self.runtime
        now, tokens = time.monotonic(), rt.tokens_generated()
        then, before = self._last
        rate = max(0, tokens - before) / (now - then) if now > then else 0.0
        self._last = (now, tokens)
        pipe = rt.redis.pipeline(transaction=False)
        bus.publish_worker(pipe, rt.info(round(rate, 2)), rt.settings.worker_ttl_s)
        lifecycle.renew_leases(pipe, rt.claimed_ids(), rt.settings.worker_ttl_s)
        pipe.execute()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        try:
            bus.remove_worker(self.runtime.redis, self.runtime.worker_id)
        except redis.RedisError:
            log.warning("could not remove this worker's heartbeat; it will expire")

    def _run(self) -> None:
        # Beat, then reap: after a Redis outage this worker renews its own leases before it
        # looks for expired ones, so it never requeues a request it is still running.
        rt = self.runtime
        while not self._stopping.wait(rt.settings.heartbeat_interval_s):
            try:
                self.beat()
                reap(rt.redis, rt.settings, rt.enqueue)
                rt.unload_if_idle()
                rt.pick_up_requests()
            except redis.RedisError:
                log.warning("heartbeat failed; retrying", exc_info=True)
