"""A step's Redis writes, recorded so that they can be applied again after a failed attempt.

Applying twice is safe: stream entry ids come from event indexes, so a repeated XADD is
refused by Redis (and ignored here) instead of duplicating a token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from shared import bus


class Writes:
    def __init__(self) -> None:
        self._ops: list[tuple[Callable[..., None], tuple[Any, ...], dict[str, Any]]] = []

    def add(self, op: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Record `op(pipeline, *args, **kwargs)`, one of shared's queueing functions."""
        self._ops.append((op, args, kwargs))

    def execute(self, r: redis.Redis) -> list[object]:
        """Apply every recorded write in one pipelined round trip; replies in order.

        A reply may be a redis.ResponseError (an index already written); connection errors raise.
        """
        pipe: bus.Pipeline = r.pipeline(transaction=False)
        for op, args, kwargs in self._ops:
            op(pipe, *args, **kwargs)
        replies: list[object] = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, redis.ConnectionError | redis.TimeoutError):
                raise reply
        return replies
