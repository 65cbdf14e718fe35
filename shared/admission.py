"""How requests enter and wait in a model's queue: admitted all together or not at all, sent again when
their broker message was lost, failed when their model went away. Each step is one Lua script."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

from shared import bus, keys, ratelimit, timeline
from shared.messages import GenerationRequest, RequestState
from shared.scripts import FAIL_FN, run_script

# KEYS: waiting set, dispatch, the owner's waiting set, the model's arrivals stream, the set of waiting
# owners, then each request's hash. ARGV: max queued (-1: no limit), ttl, now, how many requests, how many
# state arguments, the owner, the prefix of owners' waiting sets, the state's field/value pairs, then id,
# created_at, JSON per request. Returns {code, value}: {0, rank} when stored (rank: how many requests of
# the same owner were already waiting, the first one's fair-share rank); else nothing is stored and
# {-1, max queued} (the queue is full), {-2, share} (the owner holds its share) or {-3, reserve} (only
# owners with nothing waiting may take the last `reserve` places).
_ADMIT = """
local max_queued, ttl, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n, num_state, owner, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
local total = redis.call('ZCARD', KEYS[1])
if max_queued >= 0 and total + n > max_queued then return {-1, max_queued} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)  -- requests that expired unclaimed
local rank = redis.call('ZCARD', KEYS[3])
if max_queued >= 0 then
  local others = 0
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    if other ~= owner then
      redis.call('ZREMRANGEBYSCORE', prefix .. other, '-inf', now - ttl)
      if redis.call('ZCARD', prefix .. other) > 0 then others = others + 1
      else redis.call('SREM', KEYS[5], other) end
    end
  end
  local reserve = math.floor(max_queued / 8)
  local share = math.max(1, math.floor((max_queued - reserve) / (others + 1)))
  if rank + n > share then return {-2, share} end
  if rank > 0 and total + n > max_queued - reserve then return {-3, reserve} end
end
redis.call('SADD', KEYS[5], owner)
local state = {}
for i = 1, num_state do state[i] = ARGV[7 + i] end
local base = 7 + num_state
for i = 1, n do
  local rid, created, body = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  base = base + 3
  redis.call('HSET', KEYS[5 + i], 'request', body, unpack(state))
  redis.call('EXPIRE', KEYS[5 + i], ttl)
  redis.call('ZADD', KEYS[1], created, rid)
  redis.call('ZADD', KEYS[2], created, rid)
  redis.call('ZADD', KEYS[3], created, rid)
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 256, '*', 'admitted', n)
return {0, rank}
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

# KEYS: hash, stream, waiting set, dispatch, owner's waiting set, timeline. ARGV: request id, now, ttl, error
# message.
# Fails a request that is still queued (its model went away); 1 if it did.
_FAIL_QUEUED = (
    FAIL_FN
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"queued"' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
fail(KEYS[1], KEYS[2], KEYS[6], ARGV[4], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 1
"""
)


@dataclass(frozen=True)
class Refusal:
    """Why a submission was not admitted (nothing of it was stored)."""

    reason: Literal["full", "share", "reserve"]
    limit: int  # MAX_QUEUED; the owner's share; or the places kept for owners with nothing waiting


def admit(
    r: redis.Redis, requests: list[GenerationRequest], ttl_s: int, max_queued: int | None = None
) -> list[int] | Refusal:
    """Store new requests (queued) of one model and one owner in its waiting sets, all or none.

    Under max_queued, no owner crowds out the others. An owner may hold at most its share of the queue:
    7/8 of max_queued divided among the owners with requests waiting (this one included), and the last
    eighth is kept for owners with nothing waiting, so a newcomer gets in while another key's flood
    fills the rest. A Refusal says which rule refused, with nothing stored.

    Returns each request's Celery priority: its rank among the owner's waiting requests, up to
    keys.LOWEST_PRIORITY, so one owner's flood queues behind everyone else's first requests.
    """
    if not requests:
        return []
    model, owner = requests[0].model, requests[0].owner
    if any(req.model != model or req.owner != owner for req in requests):
        raise ValueError("requests admitted together must be for one model and one owner")
    state = [x for pair in bus.state_fields(RequestState()).items() for x in pair]
    per_request = [x for req in requests for x in (req.request_id, req.created_at, req.model_dump_json())]
    code, value = run_script(
        r,
        _ADMIT,
        [
            keys.waiting_key(model),
            keys.DISPATCH,
            keys.owner_waiting_key(model, owner),
            keys.arrivals_key(model),
            keys.waiting_owners_key(model),
            *(keys.request_key(req.request_id) for req in requests),
        ],
        -1 if max_queued is None else max_queued,
        ttl_s,
        time.time(),
        len(requests),
        len(state),
        owner,
        keys.owner_waiting_key(model, ""),
        *state,
        *per_request,
    )
    if int(code) < 0:
        reason: dict[int, Literal["full", "share", "reserve"]] = {-1: "full", -2: "share", -3: "reserve"}
        return Refusal(reason[int(code)], int(value))
    return [min(int(value) + i, keys.LOWEST_PRIORITY) for i in range(len(requests))]


# KEYS: waiting set, the waiting set of the owner to pass over. The id of the earliest queued request of
# another owner, or false.
_NEXT_OF_OTHERS = f"""
for _, rid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[2], rid)
     and redis.call('HGET', '{keys.request_key("")}' .. rid, 'status') == '"queued"' then
    return rid
  end
end
return false
"""


def next_waiting_of_others(r: redis.Redis, request: GenerationRequest) -> GenerationRequest | None:
    """The earliest request of another owner still queued for the same model, or None."""
    owned = keys.owner_waiting_key(request.model, request.owner)
    rid = run_script(r, _NEXT_OF_OTHERS, [keys.waiting_key(request.model), owned])
    stored = bus.load_request(r, rid) if rid else None
    return None if stored is None else stored.request


def others_waiting(r: redis.Redis, request: GenerationRequest) -> int:
    """How many requests of other owners wait for the same model."""
    pipe = r.pipeline(transaction=False)
    pipe.zcard(keys.waiting_key(request.model))
    pipe.zcard(keys.owner_waiting_key(request.model, request.owner))
    everyone, mine = pipe.execute()
    return int(everyone) - int(mine)


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
    result = run_script(
        r, _REDISPATCH, [keys.request_key(request_id), keys.DISPATCH], request_id, time.time(), older_than_s
    )
    return bool(result)


def fail_queued(
    r: redis.Redis, model: str, message: str, ttl_s: int, queued_before: float | None = None
) -> int:
    """Fail every request still queued for `model` (only those that arrived before `queued_before`, when
    given) with an error event saying why, giving back the tokens each reserved; returns how many failed.

    For a model nobody serves any more (unloaded): its requests must end, not wait forever.
    """
    client: Any = r
    failed = 0
    last = "+inf" if queued_before is None else f"({queued_before}"
    for rid in client.zrangebyscore(keys.waiting_key(model), "-inf", last):
        stored = bus.load_request(r, rid)
        owner = stored.request.owner if stored else ""
        ended = run_script(
            r,
            _FAIL_QUEUED,
            [
                keys.request_key(rid),
                keys.stream_key(rid),
                keys.waiting_key(model),
                keys.DISPATCH,
                keys.owner_waiting_key(model, owner),
                keys.timeline_key(rid),
            ],
            rid,
            time.time(),
            ttl_s,
            message,
        )
        if ended and stored is not None and stored.request.charge is not None:
            ratelimit.refund(r, stored.request.charge, used_tokens=0)
        if ended:
            timeline.record(r, rid, "failed", ttl_s, error=message)
        failed += int(ended)
    return failed
