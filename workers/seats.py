"""Who holds a seat in this worker's batch, and fair share at the door.

A task claims its request at once while the batch has room, or when its owner (an API key) has
nothing here: the engine then preempts the owner holding the most slots. Otherwise the task waits
for room, and gives its seat up as soon as another owner's request waits, so that request's
higher-priority message is the next one this worker takes. Waiting is event-driven: a request
that ends here, or a new request admitted for the model (the arrivals stream), wakes the waiters.
A task that has waited a second while another worker of the model reports a free slot goes back to
the queue, for that worker to take.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from shared import admission, fleet, keys
from shared.messages import GenerationRequest

log = logging.getLogger(__name__)
RECHECK_S = 1.0  # a waiter looks again at least this often, whatever wakes it


@dataclass(frozen=True)
class Seat:
    """What a task does with its request: claim it, or give it back (after running `instead`)."""

    claim: bool
    instead: GenerationRequest | None = None


class Seats:
    def __init__(self, client: redis.Redis, worker_id: str, model: str, max_batch: int) -> None:
        self.redis = client
        self.worker_id = worker_id
        self.model = model
        self.max_batch = max_batch
        self._held: dict[str, str] = {}  # request id -> owner, for every request claimed here
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch_arrivals, name="arrivals", daemon=True)

    def start(self) -> None:
        self._watcher.start()

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._held)

    def ids(self) -> list[str]:
        with self._changed:
            return list(self._held)

    def take(self, request: GenerationRequest) -> None:
        with self._changed:
            self._held[request.request_id] = request.owner

    def leave(self, request_id: str) -> None:
        with self._changed:
            self._held.pop(request_id, None)
            self._changed.notify_all()

    def wait(self, request: GenerationRequest) -> Seat:
        """When the request may be claimed now, or what to do instead: run another owner's waiting
        request that holds fewer seats here (then give this one back), or give it back (closing)."""
        looked_elsewhere = time.monotonic()
        with self._changed:
            while not self._closed.is_set():
                held = Counter(self._held.values())
                if len(self._held) < self.max_batch or not held[request.owner]:
                    return Seat(claim=True)
                if admission.others_waiting(self.redis, request) > 0:
                    other = admission.next_waiting_of_others(self.redis, request)
                    if other is not None and held[other.owner] < held[request.owner]:
                        return Seat(claim=False, instead=other)
                if time.monotonic() - looked_elsewhere >= RECHECK_S:
                    looked_elsewhere = time.monotonic()
                    if self._room_elsewhere():
                        return Seat(claim=False)  # another worker of this model has a free slot
                self._changed.wait(RECHECK_S)
        return Seat(claim=False)

    def _room_elsewhere(self) -> bool:
        """Whether another live worker of this model reports a free slot (its last heartbeat)."""
        return any(
            w.model == self.model and w.slots_free > 0 and w.worker_id != self.worker_id
            for w in fleet.list_workers(self.redis)
        )

    def _watch_arrivals(self) -> None:
        """Wake the waiters whenever a request is admitted for this model."""
        client: Any = self.redis
        last = "$"
        while not self._closed.is_set():
            try:
                reply = client.xread({keys.arrivals_key(self.model): last}, block=int(RECHECK_S * 1000))
            except redis.RedisError:
                self._closed.wait(RECHECK_S)
                continue
            if reply:
                last = reply[0][1][-1][0]
                with self._changed:
                    self._changed.notify_all()
