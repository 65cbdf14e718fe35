"""The worker process's lifecycle and remote control: Celery signals start, drain and stop the engine,
and remote-control commands switch or unload its model.

The process's one runtime lives here; tasks reach its engine through `service()`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery.signals import worker_init, worker_shutdown, worker_shutting_down
from celery.worker.control import control_command

from shared.keys import LOAD_MODEL_COMMAND, UNLOAD_MODEL_COMMAND, queue_name
from workers.celery_app import app, enqueue, settings
from workers.malloc_tuning import keep_freed_memory
from workers.runtime import WorkerRuntime
from workers.service import EngineService

log = logging.getLogger(__name__)
_runtime: WorkerRuntime | None = None


def service() -> EngineService:
    """This process's engine; RuntimeError while none serves (starting, loading, or idle)."""
    if _runtime is None or _runtime.service is None:
        raise RuntimeError("no engine is serving on this worker now")
    return _runtime.service


def consume(stop: str | None, start: str | None) -> None:
    """Stop consuming one model's queue and/or start another's, by remote control of this very worker."""
    node = _runtime.identity.node if _runtime else ""
    if not node:
        return
    if stop:
        app.control.cancel_consumer(queue_name(stop), destination=[node], reply=True, timeout=10)
    if start:
        app.control.add_consumer(queue_name(start), destination=[node], reply=True, timeout=10)


def _dispatch(action: str, model: str) -> dict[str, str]:
    """Hand a remote-control command to this worker's runtime; the work runs in the background."""
    if _runtime is None:
        return {"error": "the worker is still starting"}
    getattr(_runtime, action)(model)
    return {"ok": _runtime.worker_id}


@control_command(args=[("model", str)], signature="<model>")
def tw_load_model(state: Any, model: str) -> dict[str, str]:
    """Remote control: switch this worker to `model` (in the background; progress goes to Redis)."""
    return _dispatch("switch", model)


@control_command(args=[("model", str)], signature="<model>")
def tw_unload_model(state: Any, model: str) -> dict[str, str]:
    """Remote control: stop serving `model` and free its memory."""
    return _dispatch("unload", model)


assert tw_load_model.__name__ == LOAD_MODEL_COMMAND and tw_unload_model.__name__ == UNLOAD_MODEL_COMMAND


@worker_init.connect
def _start_engine(sender: Any = None, **_: Any) -> None:
    global _runtime
    keep_freed_memory()  # before the engine thread's first allocation: see workers/malloc_tuning.py
    try:
        runtime = WorkerRuntime(settings, enqueue, consume, node=getattr(sender, "hostname", "") or "")
        runtime.start()
        _runtime = runtime
    except Exception:
        # A worker without an engine must not take requests off the queue: leave at once.
        log.exception("the engine could not start; this worker exits")
        os._exit(1)


@worker_shutting_down.connect
def _drain(**_: Any) -> None:
    """On SIGTERM: let running requests finish for up to DRAIN_TIMEOUT, then hand the rest back."""
    svc = _runtime.service if _runtime else None
    if svc is None:
        return

    def wait_then_hand_back() -> None:
        if svc.num_active:
            svc.note_drain()  # the timelines then tell this stop from a lost worker
        deadline = time.monotonic() + settings.drain_timeout_s
        while svc.num_active and time.monotonic() < deadline:
            time.sleep(0.1)
        if svc.num_active:
            log.warning("drain timeout: handing %d requests back to the queue", svc.num_active)
            svc.hand_back()

    threading.Thread(target=wait_then_hand_back, name="drain", daemon=True).start()


@worker_shutdown.connect
def _stop_engine(**_: Any) -> None:
    global _runtime
    if _runtime is not None:
        _runtime.stop()
    _runtime = None
