"""Every few seconds: publish this worker's WorkerInfo and renew its leases, then reap orphaned requests."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from shared import bus, lifecycle
from shared.messages import WorkerInfo
from workers.recovery import reap
from workers.service import EngineService

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def worker_info(service: EngineService, started_at: float) -> WorkerInfo:
    """A snapshot of the worker: identity, model, slots, and the engine's step record."""
    engine, loaded = service.engine, service.loaded
    stats = engine.stats
    return WorkerInfo(
        worker_id=service.worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        model=loaded.name,
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        vocab_size=len(loaded.tokenizer),
        eos_token_id=loaded.tokenizer.eos_token_id,
        max_batch=engine.max_batch,
        max_model_len=engine.max_model_len,
        slots_used=engine.max_batch - engine.num_free_slots,
        slots_free=engine.num_free_slots,
        num_steps=stats.num_steps,
        largest_batch=stats.largest_batch,
        tokens_generated=stats.tokens_generated,
        started_at=started_at,
        updated_at=time.time(),
        mean_request_s=service.mean_request_s,
    )


class Heartbeat:
    def __init__(self, service: EngineService) -> None:
        self.service = service
        self.started_at = time.time()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """Publish this worker's info and renew its leases, in one round trip."""
        s = self.service.settings
        pipe = self.service.redis.pipeline(transaction=False)
        bus.publish_worker(pipe, worker_info(self.service, self.started_at), s.worker_ttl_s)
        lifecycle.renew_leases(pipe, self.service.claimed_ids(), s.worker_ttl_s)
        pipe.execute()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        try:
            bus.remove_worker(self.service.redis, self.service.worker_id)
        except redis.RedisError:
            log.warning("could not remove this worker's heartbeat; it will expire")

    def _run(self) -> None:
        # Beat, then reap: after a Redis outage this worker renews its own leases before it
        # looks for expired ones, so it never requeues a request it is still running.
        while not self._stopping.wait(self.service.settings.heartbeat_interval_s):
            try:
                self.beat()
                reap(self.service.redis, self.service.settings, self.service.enqueue)
            except redis.RedisError:
                log.warning("heartbeat failed; retrying", exc_info=True)
