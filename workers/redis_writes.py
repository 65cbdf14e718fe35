"""A step's Redis writes, recorded so that they can be applied again after a failed attempt.

Applying twice is safe: the requests' own writes go in one fenced script carrying the round trip's
flush mark (shared/fence.py), and stream entry ids come from event indexes, so a repeated XADD is refused by
Redis instead of duplicating a token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from shared import bus, fence, metrics


class Writes:
    def __init__(self, worker_id: str) -> None:
        """The writes of one round trip of `worker_id`; its flush mark keeps them from applying twice."""
        self.worker_id = worker_id
        self._mark: metrics.FlushMark | None = None  # taken at the first attempt, the same on every retry
        self._ops: list[tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]] = []
        self._fenced: dict[str, fence.RequestWrites] = {}

    def add(self, op: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Record `op(pipeline, *args, **kwargs)`, one of shared's queueing functions (not fenced)."""
        self._ops.append((op, args, kwargs))

    def fenced(self, request_id: str, epoch: int) -> fence.RequestWrites:
        """The writes for one request, applied only while its holder has `epoch` (shared/fence.py)."""
        writes = self._fenced.get(request_id)
        if writes is None:
            writes = self._fenced[request_id] = fence.RequestWrites(request_id, epoch)
        return writes

    def execute(self, r: redis.Redis) -> list[object]:
        """Apply every recorded write in one pipelined round trip: the fenced ones first, in one script,
        then the others; replies in order.

        A reply may be a redis.ResponseError (an index already written); connection errors raise.
        """
        pipe: bus.Pipeline = r.pipeline(transaction=False)
        if self._fenced:
            if self._mark is None:  # never earlier: a lane's numbers must reach Redis in order
                self._mark = metrics.next_mark(self.worker_id)
            fence.apply(pipe, list(self._fenced.values()), self._mark)
        for op, args, kwargs in self._ops:
            op(pipe, *args, **kwargs)
        replies: list[object] = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, redis.ConnectionError | redis.TimeoutError):
                raise reply
        return replies

    def lost(self, replies: list[object]) -> set[str]:
        """The requests whose fenced writes found another claim holding them (nothing was written)."""
        if not self._fenced:
            return set()
        held = replies[0]
        if isinstance(held, Exception):
            raise held
        return {rid for rid, ok in zip(self._fenced, held, strict=True) if not ok}  # type: ignore[call-overload]
