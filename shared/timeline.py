"""A request's timeline: what happened to it and when, for GET /v1/requests/<id>/timeline and the UI.

Each process that moves a request on records a step: the API when it is submitted, cancelled or
seen waiting at a new queue position; the worker when it claims it, puts it into a batch, sends
its first token, starts draining to stop (SIGTERM) and ends it; whoever requeues it after a crash or
a hand-back, before its task goes out again (so "requeued" precedes the next "claimed"). Steps are stream
entries (kind, time, details) that expire with the request. Informational: a step that fails to
be recorded changes nothing else.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from shared import keys

MAX_STEPS = 1000


def record(
    pipe: Any, request_id: str, kind: str, ttl_s: int, at: float | None = None, **details: Any
) -> None:
    """Queue one step of a request's timeline on a pipeline; given a client, record it in one round trip.
    It is stamped `at`, the time it happened, when written after the fact (a worker writes what an engine
    step did once the step has run), else now."""
    own = not isinstance(pipe, redis.client.Pipeline)
    target = pipe.pipeline(transaction=False) if own else pipe
    key = keys.timeline_key(request_id)
    entry = {"kind": kind, "at": repr(time.time() if at is None else at), "details": json.dumps(details)}
    target.xadd(key, entry, maxlen=MAX_STEPS, approximate=True)
    target.expire(key, ttl_s)
    if own:
        target.execute()


def read(r: Any, request_id: str) -> list[dict[str, Any]]:
    """Every recorded step, oldest first: {kind, at, ...details}. By time, not by when each was written:
    a step stamped when it happened can reach Redis after a later one from another process."""
    steps = []
    for _, fields in r.xrange(keys.timeline_key(request_id)):
        steps.append({"kind": fields["kind"], "at": float(fields["at"]), **json.loads(fields["details"])})
    return sorted(steps, key=lambda step: step["at"])  # stable: steps of one instant keep their order
