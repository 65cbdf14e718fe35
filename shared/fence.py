"""Writes that only a request's current holder may make: a lease epoch checked in the same Lua step.

A worker paused past its lease (SIGSTOP, a swapped-out VM) wakes up believing it still runs its
requests, while another worker has taken them over. Each claim bumps the request's `epoch`
(shared/lifecycle.py). A worker's writes for a request go through `apply`: one Lua script per round
trip that checks, request by request, that the hash still holds the worker's epoch and a running
status before it runs that request's writes. A stale worker's writes are dropped whole, and the
script's reply tells it which requests it lost, so it lets them go without writing again.

The script also carries the round trip's flush mark (shared/metrics.py: the worker's thread lane and
a number that grows): applied again after a lost reply, the same writes add nothing twice (metrics,
refunds, timeline steps), and the marks stay one small hash per worker.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.metrics import MARKS_TTL_S, FlushMark, Tally
from shared.ratelimit import REFUND_FN
from shared.scripts import run_script

# ARGV[1]: JSON {marks, marks_ttl, lane, number, metrics, requests: [{hash, epoch, commands, incr, refunds}]}.
# Returns, per request, 1 when it is still held with that epoch (its writes ran, or ran before), else 0.
_APPLY = (
    REFUND_FN
    + """
local batch = cjson.decode(ARGV[1])
local fresh = tonumber(redis.call('HGET', batch.marks, batch.lane) or 0) < batch.number
if fresh then
  redis.call('HSET', batch.marks, batch.lane, batch.number)
  redis.call('EXPIRE', batch.marks, batch.marks_ttl)
end
local out = {}
for i, req in ipairs(batch.requests) do
  local held = redis.call('HGET', req.hash, 'epoch') == req.epoch
    and redis.call('HGET', req.hash, 'status') == '"running"'
  out[i] = held and 1 or 0
  if held and fresh then
    for _, command in ipairs(req.commands) do redis.pcall(unpack(command)) end
    for j = 1, #req.incr, 2 do redis.call('HINCRBYFLOAT', batch.metrics, req.incr[j], req.incr[j + 1]) end
    for _, r in ipairs(req.refunds) do refund(r[1], r[2]) end
  end
end
return out
"""
)

_recorder = redis.Redis(decode_responses=True)  # never connects: its pipelines only record commands
_local = threading.local()  # one recording pipeline per thread, reused (a new one per write costs more)


@dataclass
class RequestWrites:
    """One request's writes of one round trip, run only while its holder still has `epoch`."""

    request_id: str
    epoch: int
    commands: list[list[str]] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)  # its metrics: added only with its writes
    refunds: list[tuple[str, int]] = field(default_factory=list)  # (token counter key, tokens)

    def add(self, queue: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Record the plain commands `queue(pipeline, *args, **kwargs)` would send (no scripts)."""
        pipe = getattr(_local, "pipe", None)
        if pipe is None:
            pipe = _local.pipe = _recorder.pipeline(transaction=False)
        try:
            queue(pipe, *args, **kwargs)
            recorded = list(pipe.command_stack)
        finally:
            pipe.command_stack.clear()
        for command_args, _options in recorded:
            if command_args[0] in ("EVALSHA", "EVAL"):
                raise ValueError(f"{queue.__name__} runs a script; a fenced write takes plain commands")
            self.commands.append([_text(a) for a in command_args])


def _text(value: Any) -> str:
    """A command argument as redis-py would send it."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def apply(pipe: Any, writes: list[RequestWrites], mark: FlushMark) -> None:
    """Queue every request's writes in one script; its reply lists 1 (held) or 0 (lost) per request. The
    same `mark` on a retry: writes Redis already applied are not applied again."""
    batch = {
        "marks": keys.metrics_marks_key(mark.worker_id),
        "marks_ttl": MARKS_TTL_S,
        "lane": mark.lane,
        "number": mark.number,
        "metrics": keys.METRICS,
        "requests": [
            {
                "hash": keys.request_key(w.request_id),
                "epoch": str(w.epoch),
                "commands": w.commands,
                "incr": [x for f, amount in w.tally.increments().items() for x in (f, repr(amount))],
                "refunds": [[k, n] for k, n in w.refunds],
            }
            for w in writes
        ],
    }
    run_script(pipe, _APPLY, [], json.dumps(batch))
