"""The one thread that runs torch in a worker process: model loads, the engine loop, the baseline.

Once two threads have run parallel torch ops, each keeps its own OpenMP thread team, and the
ops of either run slower: measured on 2 cores, a [32 x 576] x [576 x 1536] matmul took 400 us
from a thread alone and 500 to 650 us from a thread after the main thread had used torch
(an engine step: 0.145 s against 0.19 s). So the worker never runs torch outside this thread.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class TorchThread:
    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Queue fn to run on the torch thread, after whatever it runs now (the engine loop runs until
        it is stopped)."""
        return self._pool.submit(fn, *args, **kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the torch thread and wait for its result (or exception)."""
        return self.submit(fn, *args, **kwargs).result()
