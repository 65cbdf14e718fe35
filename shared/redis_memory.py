"""Redis's memory as TorchWeave sees it: how much is used, how many keys, and whether Redis may evict.

Everything lives in one Redis, Celery's broker included. A Redis that evicts keys when it reaches
`maxmemory` (any `maxmemory-policy` but `noeviction`) may drop kombu's bindings and queued tasks, or a
running request's record, silently; with `noeviction` a full Redis refuses writes instead, loudly. So
every process checks the policy at start and warns when it is not `noeviction`. Read from INFO, which
managed services allow where they disable CONFIG.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

SAFE_POLICY = "noeviction"


def memory(r: redis.Redis) -> dict[str, Any]:
    """used, peak and maxmemory in bytes (maxmemory 0: no limit), the eviction policy, and the number of
    keys in TorchWeave's database."""
    client: Any = r
    info = client.info("memory")
    return {
        "used_bytes": int(info["used_memory"]),
        "peak_bytes": int(info["used_memory_peak"]),
        "maxmemory_bytes": int(info.get("maxmemory", 0)),
        "policy": str(info.get("maxmemory_policy", "unknown")),
        "keys": int(client.dbsize()),
    }


def eviction_warning(policy: str) -> str | None:
    """What to tell an operator about this maxmemory-policy; None when it never evicts."""
    if policy == SAFE_POLICY:
        return None
    return (
        f"Redis's maxmemory-policy is {policy!r}, not 'noeviction': when it reaches maxmemory it may evict "
        "Celery's queues and bindings (tasks lost) or a running request's record. Set "
        "`maxmemory-policy noeviction` (redis.conf, or CONFIG SET) or choose it in the managed service."
    )


def check_eviction_policy(r: redis.Redis, log: logging.Logger) -> str | None:
    """Log a warning when Redis may evict keys; returns the warning. A Redis not reachable yet is not
    checked (the process waits for it as usual)."""
    try:
        policy = memory(r)["policy"]
    except redis.RedisError as exc:
        log.info("could not read Redis's maxmemory-policy at start (%s)", exc)
        return None
    warning = eviction_warning(policy)
    if warning is not None:
        log.warning(warning)
    return warning
