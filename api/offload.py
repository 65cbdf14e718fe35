"""CPU work of one request (tokenizing a long prompt, checking a grammar) run off the event loop.

Under gunicorn's gevent worker every connection of a process is a greenlet on one thread, so a
request that tokenizes for a second stalls every stream the process relays for that second (three
1 MB /tokenize calls left other keys' streams 3.8 s without a token). Here such work runs on a small
pool of real threads while the loop goes on; the native code it calls (tokenizers' encode_batch,
llguidance) releases the GIL. Under gthread, or Flask's test client, a request already has a thread
of its own and the work runs in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

POOL_SIZE = 1  # threads per API process: one core for its CPU work, the others left to relaying and workers
_pool: Any = None


def under_gevent() -> bool:
    """Whether this process runs gevent's patched sockets (gunicorn's gevent worker)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("socket"))


def run(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on a thread of the pool, the calling greenlet waiting for it (exceptions propagate);
    in place when not under gevent."""
    global _pool
    if not under_gevent():
        return fn(*args)
    if _pool is None:  # made in the serving process, after gunicorn's fork
        from gevent.threadpool import ThreadPool

        _pool = ThreadPool(POOL_SIZE)
    result: T = _pool.apply(fn, args)
    return result
