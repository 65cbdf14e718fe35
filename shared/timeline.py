"""A request's timeline: what happened to it and when, for GET /v1/requests/<id>/timeline and the UI.

Each process that moves a request on records a step: the API when it is submitted, cancelled or
seen waiting at a new queue position; the worker when it claims it, puts it into a batch, sends
its first token, starts draining to stop (SIGTERM) and ends it; whoever requeues it after a crash or
a hand-back, before its task goes out again (so "requeued" precedes the next "claimed"). Steps are stream
entries (kind, time, details) that expire with the request: a step takes the expiry its request's
record has (none while it runs), so no step can make a running request's timeline expire or a
finished one's outlive it. Informational: a step that fails to
be recorded changes nothing else.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from shared import keys
from shared.scripts import run_script

MAX_STEPS = 1000

# KEYS: the timeline, the request's record. ARGV: ttl, max steps, kind, at, details. The timeline expires
# when the record does; without a record (expired, or never stored) after ttl, so nothing is left behind.
_RECORD = """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'kind', ARGV[3], 'at', ARGV[4], 'details', ARGV[5])
local ttl = redis.call('PTTL', KEYS[2])
if ttl == -1 then redis.call('PERSIST', KEYS[1])
elseif ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl)
else redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""


def record(
    pipe: Any, request_id: str, kind: str, ttl_s: int, at: float | None = None, **details: Any
) -> None:
    """Queue one step of a request's timeline on a pipeline; given a client, record it in one round trip.
    It is stamped `at`, the time it happened, when written after the fact (a worker writes what an engine
    step did once the step has run), else now."""
    own = not isinstance(pipe, redis.client.Pipeline)
    target = pipe.pipeline(transaction=False) if own else pipe
    stamp = repr(time.time() if at is None else at)
    keys_ = [keys.timeline_key(request_id), keys.request_key(request_id)]
    run_script(target, _RECORD, keys_, ttl_s, MAX_STEPS, kind, stamp, json.dumps(details))
    if own:
        target.execute()


def append(pipe: Any, request_id: str, kind: str, at: float, **details: Any) -> None:
    """Queue one step of a running request's timeline as plain commands, stamped `at` (a worker's fenced
    writes: shared/fence.py). A running request's timeline has no expiry; its end sets one for its keys."""
    entry = {"kind": kind, "at": repr(at), "details": json.dumps(details)}
    pipe.xadd(keys.timeline_key(request_id), entry, maxlen=MAX_STEPS, approximate=True)


def read(r: Any, request_id: str) -> list[dict[str, Any]]:
    """Every recorded step, oldest first: {kind, at, ...details}. By time, not by when each was written:
    a step stamped when it happened can reach Redis after a later one from another process."""
    steps = []
    for _, fields in r.xrange(keys.timeline_key(request_id)):
        steps.append({"kind": fields["kind"], "at": float(fields["at"]), **json.loads(fields["details"])})
    return sorted(steps, key=lambda step: step["at"])  # stable: steps of one instant keep their order
