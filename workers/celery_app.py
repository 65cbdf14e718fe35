"""The Celery app of the workers: one queue per model, a thread per batch slot, late acknowledgement.

Run with `celery -A workers.celery_app worker`. The pool, concurrency and queue come from settings,
so a worker never reserves more requests than its engine can batch.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_shutdown, worker_shutting_down
from celery.worker.control import control_command
from kombu import Queue

from shared.keys import GENERATE_TASK, LOAD_MODEL_COMMAND, UNLOAD_MODEL_COMMAND, queue_name
from shared.messages import GenerationRequest
from shared.settings import get_settings
from workers.malloc_tuning import keep_freed_memory

log = logging.getLogger(__name__)
settings = get_settings()
app = Celery("torchweave", broker=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    worker_pool="threads",
    worker_concurrency=settings.max_batch,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    task_ignore_result=True,
    task_queues=[Queue(queue_name(settings.model))],
    task_default_queue=queue_name(settings.model),
    worker_send_task_events=True,  # Flower shows each request's state and duration
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # A message reserved by a worker that died before claiming its request comes back after this.
    # Short is safe here: a redelivered message whose request is already claimed is dropped at once.
    broker_transport="workers.broker:Transport",
    broker_transport_options={
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
)


def enqueue(request: GenerationRequest) -> None:
    """Put a requeued request's task back on its model's queue."""
    app.send_task(GENERATE_TASK, args=[request.request_id], queue=queue_name(request.model))


def consume(stop: str | None, start: str | None) -> None:
    """Stop consuming one model's queue and/or start another's, by remote control of this very worker."""
    from workers import runtime

    rt = runtime.current()
    if rt is None or not rt.hostname:
        return
    if stop:
        app.control.cancel_consumer(queue_name(stop), destination=[rt.hostname], reply=True, timeout=10)
    if start:
        app.control.add_consumer(queue_name(start), destination=[rt.hostname], reply=True, timeout=10)


def _on_runtime(action: str, model: str) -> dict[str, str]:
    """Hand a remote-control command to this worker's runtime; the work runs in the background."""
    from workers import runtime

    rt = runtime.current()
    if rt is None:
        return {"error": "the worker is still starting"}
    getattr(rt, action)(model)
    return {"ok": rt.worker_id}


@control_command(args=[("model", str)], signature="<model>")
def tw_load_model(state: Any, model: str) -> dict[str, str]:
    """Remote control: switch this worker to `model` (in the background; progress goes to Redis)."""
    return _on_runtime("switch", model)


@control_command(args=[("model", str)], signature="<model>")
def tw_unload_model(state: Any, model: str) -> dict[str, str]:
    """Remote control: stop serving `model` and free its memory."""
    return _on_runtime("unload", model)


assert tw_load_model.__name__ == LOAD_MODEL_COMMAND and tw_unload_model.__name__ == UNLOAD_MODEL_COMMAND


@worker_init.connect
def _start_engine(sender: Any = None, **_: Any) -> None:
    from workers import runtime

    keep_freed_memory()  # before the engine thread's first allocation: see workers/malloc_tuning.py
    try:
        runtime.start(settings, enqueue, consume, hostname=getattr(sender, "hostname", "") or "")
    except Exception:
        # A worker without an engine must not take requests off the queue: leave at once.
        log.exception("the engine could not start; this worker exits")
        os._exit(1)


@worker_shutting_down.connect
def _drain(**_: Any) -> None:
    from workers import runtime

    runtime.drain(settings.drain_timeout_s)


@worker_shutdown.connect
def _stop_engine(**_: Any) -> None:
    from workers import runtime

    runtime.stop()
