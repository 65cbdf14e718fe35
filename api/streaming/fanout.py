"""One reader per API process for every stream it relays: a single blocking XREAD over all
followed streams, fanned out to in-process subscriber queues.

Without it each open stream would hold its own Redis connection in its own blocking read,
and every token would cost a round trip per subscriber. With it a decode step costs one
round trip however many streams are open, and each event is decoded once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import bus, keys
from shared.messages import ErrorEvent, StreamEvent

log = logging.getLogger(__name__)
# The read returns at once when any followed stream (or the wake stream) gets an entry; the block
# stays under redis-py's 5 s socket timeout.
BLOCK_MS = 2000


Tagged = tuple[int, StreamEvent]  # (the subscription's tag, an event): several streams can share a queue


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of events with index > after_index (shared with others to merge streams)."""

    request_id: str
    after_index: int
    tag: int = 0
    events: queue.Queue[Tagged] = field(default_factory=queue.Queue)

    def get(self, timeout_s: float) -> list[Tagged]:
        """Events that arrived, waiting up to timeout_s for the first; [] when none came."""
        try:
            first = self.events.get(timeout=timeout_s)
        except queue.Empty:
            return []
        got = [first]
        while True:
            try:
                got.append(self.events.get_nowait())
            except queue.Empty:
                return got


class StreamFanout:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._wake_key = f"{keys.PREFIX}:fanout:{uuid.uuid4().hex}"
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def subscribe(
        self, request_id: str, after_index: int, tag: int = 0, events: queue.Queue[Tagged] | None = None
    ) -> Subscription:
        """Follow a request from after_index on; its stored events arrive first, then live ones.

        Subscriptions given the same `events` queue share it, their events told apart by `tag`.
        """
        sub = Subscription(request_id, after_index, tag, events if events is not None else queue.Queue())
        with self._lock:
            self._subs.setdefault(request_id, set()).add(sub)
            if self._thread is None:  # started lazily: after gunicorn forks, in the process that serves
                self._thread = threading.Thread(target=self._run, name="stream-fanout", daemon=True)
                self._thread.start()
        self._wake()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.request_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.request_id]

    def close(self) -> None:
        """Stop reading (the thread ends within one blocking read); for tests and shutdown."""
        self._closed.set()
        if self._thread is not None:
            self._wake()
            self._thread.join(timeout=5)

    def _wake(self) -> None:
        # Interrupts the fanout's blocking read so a new subscriber's backlog is read at once.
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=True)
        pipe.expire(self._wake_key, 60)
        pipe.execute()

    def _run(self) -> None:
        wake_id = "$"
        while not self._closed.is_set():
            with self._lock:
                # Each stream is read from the earliest point any of its subscribers needs.
                positions = {rid: min(s.after_index for s in subs) for rid, subs in self._subs.items()}
            streams = {
                keys.stream_key(rid): bus.entry_id(pos) if pos >= 0 else "0-0"
                for rid, pos in positions.items()
            }
            streams[self._wake_key] = wake_id
            client: Any = self.redis
            try:
                reply = client.xread(streams, block=BLOCK_MS)
            except redis.ResponseError as exc:
                # Redis refused the read itself: one stream's position is at fault. Find it, end its
                # subscribers with an error, and keep serving everyone else.
                self._drop_unreadable(streams, exc)
                continue
            except redis.RedisError:
                log.warning("stream fanout: Redis read failed; retrying", exc_info=True)
                time.sleep(0.5)
                continue
            for key, entries in reply or []:
                if key == self._wake_key:
                    wake_id = entries[-1][0]
                    continue
                self._dispatch(key.removeprefix(keys.stream_key("")), entries)

    def _drop_unreadable(self, streams: dict[str, str], exc: redis.ResponseError) -> None:
        """Read each stream alone; end the subscribers of those Redis refuses with an error event."""
        client: Any = self.redis
        bad = []
        for key, position in streams.items():
            try:
                client.xread({key: position}, count=1)
            except redis.ResponseError:
                bad.append(key.removeprefix(keys.stream_key("")))
            except redis.RedisError:
                return  # Redis itself is in trouble: the main loop retries
        log.warning("stream fanout: read refused (%s); dropping subscribers of %s", exc, bad)
        if not bad:
            time.sleep(0.5)
        for request_id in bad:
            with self._lock:
                subs = self._subs.pop(request_id, set())
            for sub in subs:
                message = "this stream cannot be read from the position asked; resume from a valid index"
                sub.events.put((sub.tag, ErrorEvent(index=sub.after_index + 1, message=message)))

    def _dispatch(self, request_id: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        events = [bus.decode_event(fields) for _id, fields in entries]
        with self._lock:
            subs = list(self._subs.get(request_id, ()))
        for sub in subs:
            for event in events:
                # Strictly the next index: a subscriber that joined behind the others gets the
                # entries it lacks on the next read, never a gap.
                if event.index == sub.after_index + 1:
                    sub.events.put((sub.tag, event))
                    sub.after_index = event.index
