"""Per-key rate limits shared by every API process: requests and tokens per minute, counted in Redis.

Each key has one counter of requests and one of tokens per unix minute. A submission checks and
reserves both in one Lua script, so two API processes never let more through than the limit. Tokens
are reserved at submission (prompt plus max_new_tokens) and the unused part is given back when the
request ends, while its minute still runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared import keys
from shared.messages import ApiKey, RateCharge
from shared.scripts import run_script

WINDOW_S = 60

# KEYS: request counter, token counter. ARGV: rpm (-1: none), tpm (-1: none), requests, tokens, ttl.
# Returns {1 if reserved, requests used, tokens used, which limit refused ('' when reserved)}.
_RESERVE = """
local req = tonumber(redis.call('GET', KEYS[1]) or '0')
local tok = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm, tpm, n, t = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if rpm >= 0 and req + n > rpm then return {0, req, tok, 'requests'} end
if tpm >= 0 and tok + t > tpm then return {0, req, tok, 'tokens'} end
req = redis.call('INCRBY', KEYS[1], n)
redis.call('EXPIRE', KEYS[1], ARGV[5])
tok = redis.call('INCRBY', KEYS[2], t)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {1, req, tok, ''}
"""

# Lua: give tokens back to a token counter; nothing happens once its minute is over (shared/fence.py too).
REFUND_FN = """
local function refund(key, tokens)
  if redis.call('EXISTS', key) == 1 then return redis.call('DECRBY', key, tokens) end
  return 0
end
"""
# KEYS: token counter. ARGV: tokens to give back.
_REFUND = REFUND_FN + "return refund(KEYS[1], ARGV[1])\n"


@dataclass(frozen=True)
class Reservation:
    """The outcome of a reservation, with what OpenAI's x-ratelimit headers report."""

    allowed: bool
    refused_by: str  # "requests", "tokens", or "" when allowed
    window: int
    requests_used: int
    tokens_used: int
    rpm: int | None
    tpm: int | None

    @property
    def reset_s(self) -> float:
        """Seconds until this minute's counters start again."""
        return max(0.0, (self.window + 1) * WINDOW_S - time.time())

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers for the limits this key has."""
        out: dict[str, str] = {}
        reset = f"{self.reset_s:.0f}s"
        for kind, limit, used in (
            ("requests", self.rpm, self.requests_used),
            ("tokens", self.tpm, self.tokens_used),
        ):
            if limit is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
                out[f"x-ratelimit-reset-{kind}"] = reset
        return out


def current_window(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // WINDOW_S)


def reserve(r: Any, key: ApiKey, requests: int, tokens: int) -> Reservation:
    """Reserve `requests` requests and `tokens` tokens of this minute's budget, or none of them."""
    window = current_window()
    allowed, req_used, tok_used, refused_by = run_script(
        r,
        _RESERVE,
        [keys.rate_key(key.key_id, "req", window), keys.rate_key(key.key_id, "tok", window)],
        -1 if key.rpm is None else key.rpm,
        -1 if key.tpm is None else key.tpm,
        requests,
        tokens,
        2 * WINDOW_S,
    )
    return Reservation(bool(allowed), str(refused_by), window, int(req_used), int(tok_used), key.rpm, key.tpm)


def refund(pipe: Any, charge: RateCharge, used_tokens: int) -> None:
    """Queue the return of the reserved tokens a request did not use (only within its minute)."""
    owed = refund_of(charge, used_tokens)
    if owed is not None:
        run_script(pipe, _REFUND, [owed[0]], owed[1])


def refund_of(charge: RateCharge, used_tokens: int) -> tuple[str, int] | None:
    """(token counter, tokens) a request that used used_tokens gives back; None when it owes nothing."""
    unused = charge.tokens - used_tokens
    return (keys.rate_key(charge.key_id, "tok", charge.window), unused) if unused > 0 else None
