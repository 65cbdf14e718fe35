"""Revoking a key ends everything it has open, not only its next request: its sessions, its queued
requests (cancelled at once) and its running ones (cancelled through shared/lifecycle.py: the worker
stops them within one step). Its open streams notice within a second (guard.is_still_valid, asked by
the relay) and end with a `key_revoked` error, or close code 1008 on a WebSocket."""

from __future__ import annotations

from typing import Any

import redis

from api.auth import sessions, store
from shared import bus, keys, lifecycle


def revoke_key(r: redis.Redis, key_id: str, ttl_s: int) -> dict[str, int] | None:
    """Revoke a key and end what it has open: counts of sessions closed and requests cancelled, or None
    when there is no such key."""
    if not store.revoke(r, key_id):
        return None
    num_sessions = sessions.close_all(r, key_id)
    return {"sessions_closed": num_sessions, "requests_cancelled": cancel_owned(r, key_id, ttl_s)}


def cancel_owned(r: redis.Redis, owner: str, ttl_s: int) -> int:
    """Cancel every queued or running request of an owner; how many the cancel took. The queued go
    first: stopping a running one frees a place a queued one would otherwise take."""
    client: Any = r
    queued: list[str] = []
    for model in sorted(client.smembers(keys.MODELS)):
        queued.extend(client.zrange(keys.owner_waiting_key(model, owner), 0, -1))
    running: list[str] = client.zrange(keys.LEASES, 0, -1)  # on every worker, any owner's
    cancelled = 0
    for rid in [*queued, *running]:
        stored = bus.load_request(r, rid)
        if stored is not None and stored.request.owner == owner:
            cancelled += lifecycle.cancel(r, stored.request, ttl_s) in ("queued", "running")
    return cancelled
