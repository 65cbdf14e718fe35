"""Who owns a request, decided atomically in Redis: claim, cancel, leases, and requeue.

Each transition is one Lua script, so a worker claiming, an API cancelling and a reaper
requeueing can race freely: exactly one of them wins. A worker holds a lease on every
request it runs and renews it with its heartbeat; a request whose lease runs out (its
worker died) is requeued by any live worker, and continues where its stream left off.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from shared import bus, keys, metrics, ratelimit, timeline
from shared.messages import DoneEvent, FinishReason, GenerationRequest, RequestState, RequestStatus, Usage
from shared.scripts import FAIL_FN, FINAL, run_script

# KEYS: hash, waiting set, leases, dispatch, owner's waiting set, stream, timeline. ARGV: request id,
# '"running"', worker id (JSON), lease expiry. A running request never expires (a queued one does, after
# STREAM_TTL unclaimed): its record, stream and timeline lose their expiry here and get it back at its end.
# Returns the claim's epoch (0: not claimed), which fences its holder's writes (shared/fence.py).
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'worker_id', ARGV[3])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[6])
redis.call('PERSIST', KEYS[7])
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return epoch
"""

# KEYS: hash, stream, waiting set, cancel flag, owner's waiting set. ARGV: request id, done event JSON, ttl,
# then field/value pairs of the cancelled state. Returns the status the request had.
_CANCEL = (
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == '"queued"' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('XADD', KEYS[2], '1-0', 'data', ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 'queued'
end
if not ("""
    + FINAL
    + """) then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
end
return cjson.decode(status)
"""
)

# KEYS: hash, stream, waiting set, leases, dispatch, owner's waiting set, timeline. ARGV: request id, now,
# mode ('expired' or the JSON worker id handing it back), max attempts, created_at, ttl, error message.
# Returns 'requeued', 'failed' or 'skipped'. Queued again, it expires again if no worker takes it in time.
_REQUEUE = (
    FAIL_FN
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or """
    + FINAL
    + """ then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 'skipped'
end
if ARGV[3] == 'expired' then
  local lease = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if not lease or tonumber(lease) >= tonumber(ARGV[2]) then return 'skipped' end
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if attempts >= tonumber(ARGV[4]) then
    fail(KEYS[1], KEYS[2], KEYS[7], ARGV[7], ARGV[2], ARGV[6])
    redis.call('ZREM', KEYS[4], ARGV[1])
    return 'failed'
  end
elseif redis.call('HGET', KEYS[1], 'worker_id') ~= ARGV[3] then
  return 'skipped'
end
redis.call('HSET', KEYS[1], 'status', '"queued"', 'worker_id', 'null')
for _, key in ipairs({KEYS[1], KEYS[2], KEYS[7]}) do redis.call('EXPIRE', key, ARGV[6]) end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return 'requeued'
"""
)


# KEYS: each running request's hash then its cancel flag. ARGV: each one's epoch ('' to skip that check).
# Returns, per request: "gone" when its record is missing (expired, or lost with Redis's data), "lost"
# when another claim took it (or it is no longer running), "cancel" when it was cancelled, else "".
_CHECK_RUNNING = """
local out = {}
for i = 1, #KEYS, 2 do
  local epoch = ARGV[(i + 1) / 2]
  if redis.call('EXISTS', KEYS[i]) == 0 then out[#out + 1] = 'gone'
  elseif epoch ~= '' and (redis.call('HGET', KEYS[i], 'epoch') ~= epoch
      or redis.call('HGET', KEYS[i], 'status') ~= '"running"') then out[#out + 1] = 'lost'
  elseif redis.call('EXISTS', KEYS[i + 1]) == 1 then out[#out + 1] = 'cancel'
  else out[#out + 1] = '' end
end
return out
"""

# KEYS: leases, then each request's hash. ARGV: lease expiry, the worker id (JSON), then the request ids.
# Renews only the leases of requests this worker still holds: a worker that woke up after losing them
# must not keep another worker's lease alive.
_RENEW = """
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'worker_id') == ARGV[2]
      and redis.call('HGET', KEYS[i], 'status') == '"running"' then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i + 1])
  end
end
return 0
"""


def claim(r: redis.Redis, request: GenerationRequest, worker_id: str, lease_s: float) -> int:
    """Take a queued request to run it, with a lease of lease_s. Returns the claim's epoch, which its
    writes carry (shared/fence.py), or 0 if it is not queued."""
    rid = request.request_id
    result = run_script(
        r,
        _CLAIM,
        [
            keys.request_key(rid),
            keys.waiting_key(request.model),
            keys.LEASES,
            keys.DISPATCH,
            keys.owner_waiting_key(request.model, request.owner),
            keys.stream_key(rid),
            keys.timeline_key(rid),
        ],
        rid,
        json.dumps(RequestStatus.RUNNING.value),
        json.dumps(worker_id),
        time.time() + lease_s,
    )
    return int(result)


def cancel(r: redis.Redis, request: GenerationRequest, ttl_s: int) -> str:
    """Cancel a request: at once if it is still queued, else by flagging it for its worker.

    Returns the status it had: "queued" (now cancelled), "running" (flagged; the worker ends it
    within one step), a final status (nothing done), or "missing". A cancel that took records a
    `cancel_asked` step, and a queued request's key gets back every token it reserved (it never ran;
    a running one is refunded by its worker when it ends).
    """
    rid = request.request_id
    done = DoneEvent(index=0, finish_reason=FinishReason.CANCELLED, usage=Usage.of(0, 0))
    state = RequestState(
        status=RequestStatus.CANCELLED,
        finished_at=time.time(),
        finish_reason=FinishReason.CANCELLED,
        usage=done.usage,
    )
    pairs = [x for item in bus.state_fields(state, only_set=True).items() for x in item]
    result: str = run_script(
        r,
        _CANCEL,
        [
            keys.request_key(rid),
            keys.stream_key(rid),
            keys.waiting_key(request.model),
            keys.cancel_key(rid),
            keys.owner_waiting_key(request.model, request.owner),
        ],
        rid,
        done.model_dump_json(),
        ttl_s,
        *pairs,
    )
    if result in ("queued", "running"):
        pipe = r.pipeline(transaction=False)
        timeline.record(pipe, rid, "cancel_asked", ttl_s, was=result)
        if result == "queued":
            metrics.count_ended_unrun(pipe, request.model, "", FinishReason.CANCELLED.value)
            if request.charge is not None:
                ratelimit.refund(pipe, request.charge, used_tokens=0)
        pipe.execute()
    return result


def check_running(pipe: bus.Pipeline, request_ids: list[str], epochs: list[int] | None = None) -> None:
    """Queue the check of running requests; its reply lists, per id, "gone" (no record: stop, write
    nothing), "lost" (another claim holds it, when its epoch is given: stop, write nothing), "cancel"
    (its cancel flag is set) or "" (carry on)."""
    names = [k for rid in request_ids for k in (keys.request_key(rid), keys.cancel_key(rid))]
    held = [str(e) for e in epochs] if epochs is not None else [""] * len(request_ids)
    run_script(pipe, _CHECK_RUNNING, names, *held)


def renew_leases(pipe: bus.Pipeline, request_ids: list[str], lease_s: float, worker_id: str) -> None:
    """Queue the renewal of this worker's leases (with its heartbeat), of the requests it still holds."""
    if request_ids:
        hashes = [keys.request_key(rid) for rid in request_ids]
        run_script(pipe, _RENEW, [keys.LEASES, *hashes], time.time() + lease_s, json.dumps(worker_id),
                   *request_ids)  # fmt: skip


def release(pipe: bus.Pipeline, request_id: str) -> None:
    """Queue the end of a lease: the request ended on this worker."""
    pipe.zrem(keys.LEASES, request_id)


def expired_leases(r: redis.Redis) -> list[str]:
    """Requests whose worker stopped renewing its lease: it died or lost Redis for too long."""
    client: Any = r
    ids: list[str] = client.zrangebyscore(keys.LEASES, "-inf", time.time())
    return ids


def requeue(
    r: redis.Redis, request: GenerationRequest, *, holder: str | None, max_attempts: int, ttl_s: int
) -> str:
    """Put a running request back in its queue: after its lease expired (holder None, counted as an
    attempt; past max_attempts it fails with an error event instead), or handed back by the worker
    that holds it.

    Returns "requeued" (the caller then enqueues its task again), "failed" or "skipped". A request that
    failed gives its key back every token it reserved: the server failed it, not its sender.
    """
    rid = request.request_id
    message = f"request failed on {max_attempts} workers in turn (each stopped while running it)"
    result: str = run_script(
        r,
        _REQUEUE,
        [
            keys.request_key(rid),
            keys.stream_key(rid),
            keys.waiting_key(request.model),
            keys.LEASES,
            keys.DISPATCH,
            keys.owner_waiting_key(request.model, request.owner),
            keys.timeline_key(rid),
        ],
        rid,
        time.time(),
        "expired" if holder is None else json.dumps(holder),
        max_attempts,
        request.created_at,
        ttl_s,
        message,
    )
    if result == "failed" and request.charge is not None:
        ratelimit.refund(r, request.charge, used_tokens=0)
    return result
