"""Reading and writing requests in Redis: request hashes, their event streams and the waiting sets.

A request's events live in a Redis Stream whose entry ids are derived from the event
index, so a reader resumes after any index and a writer can never append an index twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.messages import STREAM_EVENT, GenerationRequest, RequestState, StreamEvent

Pipeline = Any  # redis.client.Pipeline; its generic type varies between redis-py versions


MAX_CONNECTIONS = 10_000  # every open stream holds one connection in a blocking read


def connect(url: str, tls_verify: bool = True) -> redis.Redis:
    """A client that returns str and is safe to share between threads (and greenlets).

    redis-py caps a pool at 100 connections by default; an API process following hundreds
    of streams needs one per stream, so the cap is raised. A rediss:// server's certificate is
    verified unless tls_verify is False (REDIS_TLS_VERIFY=0: managed Redis with a self-signed
    certificate, such as Heroku's).
    """
    tls: dict[str, Any] = {} if tls_verify or not url.startswith("rediss://") else {"ssl_cert_reqs": "none"}
    return redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, max_connections=MAX_CONNECTIONS, **tls
    )


def entry_id(index: int) -> str:
    """Stream entry id of event `index`: ids must be above 0-0, so index 0 is 1-0."""
    return f"{index + 1}-0"


@dataclass(frozen=True)
class StoredRequest:
    """A request as its hash holds it: what was asked, and how far it has got."""

    request: GenerationRequest
    state: RequestState


def load_request(r: redis.Redis, request_id: str) -> StoredRequest | None:
    """The request and its state, or None when it is unknown or expired."""
    fields: dict[str, str] = r.hgetall(keys.request_key(request_id))  # type: ignore[assignment]
    if "request" not in fields:
        return None
    request = GenerationRequest.model_validate_json(fields.pop("request"))
    return StoredRequest(request, decode_state(fields))


def state_fields(state: RequestState, only_set: bool = False) -> dict[str, str]:
    data = state.model_dump(mode="json", exclude_unset=only_set)
    if only_set:
        data["v"] = state.v
    return {name: json.dumps(value) for name, value in data.items()}


def decode_state(fields: dict[str, str]) -> RequestState:
    """Rebuild a RequestState from its hash fields (each a JSON value)."""
    names = RequestState.model_fields
    return RequestState.model_validate({k: json.loads(v) for k, v in fields.items() if k in names})


def update_state(pipe: Pipeline, request_id: str, state: RequestState) -> None:
    """Queue an HSET of the fields set explicitly on `state` (RequestState(status=..., ...))."""
    pipe.hset(keys.request_key(request_id), mapping=state_fields(state, only_set=True))


def append_event(pipe: Pipeline, request_id: str, event: StreamEvent) -> None:
    """Queue an XADD of one event under the entry id its index gives."""
    pipe.xadd(keys.stream_key(request_id), {"data": event.model_dump_json()}, id=entry_id(event.index))


def expire_request(pipe: Pipeline, request_id: str, ttl_s: int) -> None:
    """Queue the expiry of a request's hash, stream and timeline, counted from now."""
    pipe.expire(keys.request_key(request_id), ttl_s)
    pipe.expire(keys.stream_key(request_id), ttl_s)
    pipe.expire(keys.timeline_key(request_id), ttl_s)


def delete_request(pipe: Pipeline, request_id: str) -> None:
    """Queue the removal of a request's hash, stream and timeline."""
    pipe.delete(keys.request_key(request_id), keys.stream_key(request_id), keys.timeline_key(request_id))


def last_index(r: redis.Redis, request_id: str) -> int:
    """The index of a stream's last event; -1 when it has none."""
    client: Any = r
    last = client.xrevrange(keys.stream_key(request_id), count=1)
    return int(last[0][0].split("-")[0]) - 1 if last else -1


def read_events(
    r: redis.Redis,
    request_id: str,
    after_index: int = -1,
    block_ms: int | None = None,
    count: int | None = 512,
) -> list[StreamEvent]:
    """Events with index > after_index; with block_ms, wait that long for the first one."""
    key = keys.stream_key(request_id)
    start = entry_id(after_index) if after_index >= 0 else "0-0"
    client: Any = r  # redis-py's reply types are unions too wide to narrow usefully
    if block_ms is None:
        # XRANGE's start is inclusive; "(" makes it exclusive.
        entries = client.xrange(key, min=f"({start}" if after_index >= 0 else "-", count=count)
    else:
        reply = client.xread({key: start}, count=count, block=block_ms)
        entries = reply[0][1] if reply else []
    return [decode_event(fields) for _id, fields in entries]


def decode_event(fields: dict[str, str]) -> StreamEvent:
    """The event stored in one stream entry's fields."""
    event: StreamEvent = STREAM_EVENT.validate_json(fields["data"])
    return event


def num_waiting(r: redis.Redis, model: str) -> int:
    """Requests of a model that wait for a worker."""
    client: Any = r
    return int(client.zcard(keys.waiting_key(model)))


def queue_position(r: redis.Redis, request: GenerationRequest, ttl_s: int) -> int | None:
    """How many requests for the same model wait ahead of this one; None once it left the queue."""
    key = keys.waiting_key(request.model)
    client: Any = r
    client.zremrangebyscore(key, "-inf", time.time() - ttl_s)  # entries of requests that expired unclaimed
    rank = client.zrank(key, request.request_id)
    return None if rank is None else int(rank)
