"""Who owns a request, decided atomically in Redis: claim, cancel, leases, and requeue.

Each transition is one Lua script, so a worker claiming, an API cancelling and a reaper
requeueing can race freely: exactly one of them wins. A worker holds a lease on every
request it runs and renews it with its heartbeat; a request whose lease runs out (its
worker died) is requeued by any live worker, and continues where its stream left off.
"""

from __future__ import annotations

import json
import time
import weakref
from typing import Any

import redis
from redis.commands.core import Script

from shared import bus, keys
from shared.messages import DoneEvent, FinishReason, GenerationRequest, RequestState, RequestStatus, Usage

# Lua: end a request with an error event after its last event, and mark it failed. Scripts that fail
# a request start with this.
_FAIL_FN = """
local function fail(hash, stream, message, now, ttl)
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  local index = 0
  if #last > 0 then index = tonumber(string.match(last[1][1], '^(%d+)')) end
  local event = cjson.encode({v=1, type='error', index=index, message=message})
  redis.call('XADD', stream, (index + 1) .. '-0', 'data', event)
  redis.call('HSET', hash, 'status', '"failed"', 'finish_reason', '"error"',
             'error', cjson.encode(message), 'finished_at', now)
  redis.call('EXPIRE', hash, ttl)
  redis.call('EXPIRE', stream, ttl)
end
"""

_FINAL = "status == '\"finished\"' or status == '\"cancelled\"' or status == '\"failed\"'"

# KEYS: hash, waiting set, leases, dispatch. ARGV: request id, '"running"', worker id (JSON), lease expiry.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'worker_id', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
"""

# KEYS: hash, dispatch. ARGV: request id, now, resend-after seconds. 1: enqueue its task again.
_REDISPATCH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local sent = redis.call('ZSCORE', KEYS[2], ARGV[1])
if sent and tonumber(sent) > tonumber(ARGV[2]) - tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: hash, stream, waiting set, cancel flag, leases. ARGV: request id, done event JSON, ttl,
# then field/value pairs of the cancelled state. Returns the status the request had.
_CANCEL = (
    """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == '"queued"' then
  redis.call('HSET', KEYS[1], unpack(ARGV, 4))
  redis.call('XADD', KEYS[2], '1-0', 'data', ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 'queued'
end
if not ("""
    + _FINAL
    + """) then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
end
return cjson.decode(status)
"""
)

# KEYS: hash, stream, waiting set, leases, dispatch. ARGV: request id, now, mode ('expired' or the JSON worker
# id handing it back), max attempts, created_at, ttl, error message.
# Returns 'requeued', 'failed' or 'skipped'.
_REQUEUE = (
    _FAIL_FN
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or """
    + _FINAL
    + """ then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 'skipped'
end
if ARGV[3] == 'expired' then
  local lease = redis.call('ZSCORE', KEYS[4], ARGV[1])
  if not lease or tonumber(lease) >= tonumber(ARGV[2]) then return 'skipped' end
  local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  if attempts >= tonumber(ARGV[4]) then
    fail(KEYS[1], KEYS[2], ARGV[7], ARGV[2], ARGV[6])
    redis.call('ZREM', KEYS[4], ARGV[1])
    return 'failed'
  end
elseif redis.call('HGET', KEYS[1], 'worker_id') ~= ARGV[3] then
  return 'skipped'
end
redis.call('HSET', KEYS[1], 'status', '"queued"', 'worker_id', 'null')
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return 'requeued'
"""
)


# KEYS: hash, stream, waiting set, dispatch. ARGV: request id, now, ttl, error message.
# Fails a request that is still queued (its model went away); 1 if it did.
_FAIL_QUEUED = (
    _FAIL_FN
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
fail(KEYS[1], KEYS[2], ARGV[4], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""
)


_registered: weakref.WeakKeyDictionary[redis.Redis, dict[str, Script]] = weakref.WeakKeyDictionary()


def _eval(r: redis.Redis, source: str, keys_: list[str], *args: Any) -> Any:
    """Run one of this module's scripts by its SHA (loaded once per server, through register_script)."""
    scripts = _registered.setdefault(r, {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = r.register_script(source)
    return script(keys=keys_, args=args)


def claim(r: redis.Redis, request: GenerationRequest, worker_id: str, lease_s: float) -> bool:
    """Take a queued request to run it, with a lease of lease_s; False if it is not queued."""
    rid = request.request_id
    result = _eval(
        r,
        _CLAIM,
        [keys.request_key(rid), keys.waiting_key(request.model), keys.LEASES, keys.DISPATCH],
        rid,
        json.dumps(RequestStatus.RUNNING.value),
        json.dumps(worker_id),
        time.time() + lease_s,
    )
    return bool(result)


def cancel(r: redis.Redis, request: GenerationRequest, ttl_s: int) -> str:
    """Cancel a request: at once if it is still queued, else by flagging it for its worker.

    Returns the status it had: "queued" (now cancelled), "running" (flagged; the worker ends it
    within one step), a final status (nothing done), or "missing".
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
    result: str = _eval(
        r,
        _CANCEL,
        [keys.request_key(rid), keys.stream_key(rid), keys.waiting_key(request.model), keys.cancel_key(rid)],
        rid,
        done.model_dump_json(),
        ttl_s,
        *pairs,
    )
    return result


def renew_leases(pipe: bus.Pipeline, request_ids: list[str], lease_s: float) -> None:
    """Queue the renewal of this worker's leases (with its heartbeat)."""
    if request_ids:
        until = time.time() + lease_s
        pipe.zadd(keys.LEASES, {rid: until for rid in request_ids}, xx=True)


def release(pipe: bus.Pipeline, request_id: str) -> None:
    """Queue the end of a lease: the request ended on this worker."""
    pipe.zrem(keys.LEASES, request_id)


def expired_leases(r: redis.Redis) -> list[str]:
    """Requests whose worker stopped renewing its lease: it died or lost Redis for too long."""
    client: Any = r
    ids: list[str] = client.zrangebyscore(keys.LEASES, "-inf", time.time())
    return ids


def requeue(
    r: redis.Redis, request: GenerationRequest, *, owner: str | None, max_attempts: int, ttl_s: int
) -> str:
    """Put a running request back in its queue: after its lease expired (owner None, counted as an
    attempt; past max_attempts it fails with an error event instead), or handed back by its owner.

    Returns "requeued" (the caller then enqueues its task again), "failed" or "skipped".
    """
    rid = request.request_id
    message = f"request failed on {max_attempts} workers in turn (each stopped while running it)"
    result: str = _eval(
        r,
        _REQUEUE,
        [
            keys.request_key(rid),
            keys.stream_key(rid),
            keys.waiting_key(request.model),
            keys.LEASES,
            keys.DISPATCH,
        ],
        rid,
        time.time(),
        "expired" if owner is None else json.dumps(owner),
        max_attempts,
        request.created_at,
        ttl_s,
        message,
    )
    return result


def stale_dispatches(r: redis.Redis, older_than_s: float) -> list[str]:
    """Queued requests whose task was last enqueued more than older_than_s ago."""
    client: Any = r
    ids: list[str] = client.zrangebyscore(keys.DISPATCH, "-inf", time.time() - older_than_s)
    return ids


def redispatch(r: redis.Redis, request_id: str, older_than_s: float) -> bool:
    """True when a still-queued request's task should be enqueued again (and marks it sent now).

    The broker can lose a message: kombu's Redis transport pops it, then records it as
    unacknowledged in a second step, and a worker killed in between takes it along. A copy is
    harmless (claiming is atomic), so a request queued this long gets its task sent again.
    """
    result = _eval(
        r, _REDISPATCH, [keys.request_key(request_id), keys.DISPATCH], request_id, time.time(), older_than_s
    )
    return bool(result)


def fail_queued(r: redis.Redis, model: str, message: str, ttl_s: int) -> int:
    """Fail every request still queued for `model` with an error event saying why; returns how many.

    For a model nobody serves any more (unloaded): its requests must end, not wait forever.
    """
    client: Any = r
    failed = 0
    for rid in client.zrange(keys.waiting_key(model), 0, -1):
        failed += int(
            _eval(
                r,
                _FAIL_QUEUED,
                [keys.request_key(rid), keys.stream_key(rid), keys.waiting_key(model), keys.DISPATCH],
                rid,
                time.time(),
                ttl_s,
                message,
            )
        )
    return failed
