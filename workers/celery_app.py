"""The Celery app of the workers: configuration only. One queue per model, a thread per batch slot,
late acknowledgement.

Run with `celery -A workers.celery_app worker`. The pool, concurrency and queue come from settings,
so a worker never reserves more requests than its engine can batch. The tasks live in
workers/tasks.py; the remote-control commands and the signal handlers that start and stop the
engine live in workers/control.py (both imported by `include`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from kombu import Queue

from shared import logs
from shared.broker_options import broker_options, broker_tls
from shared.keys import GENERATE_TASK, queue_name
from shared.messages import GenerationRequest
from shared.settings import get_settings

settings = get_settings()
app = Celery("torchweave", broker=settings.redis_url, include=["workers.tasks", "workers.control"])
app.conf.update(
    worker_pool="threads",
    # FAIR_SEATS threads past the batch: another key's request can be taken while one key fills every
    # slot (workers/service.py holds a task of that key back instead of claiming it).
    worker_concurrency=settings.max_batch + settings.fair_seats,
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
        **broker_options(settings),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    **broker_tls(settings),
)


@signals.setup_logging.connect
def _setup_logging(loglevel: int | None = None, **_: Any) -> None:
    """Celery leaves logging to us: LOG_FORMAT lines, each carrying its request id (shared/logs.py)."""
    logs.configure(settings.log_format, loglevel or "INFO")


@signals.celeryd_after_setup.connect
def _no_banner_in_json(instance: Any, **_: Any) -> None:
    """Celery prints a plain-text start-up banner unless the worker is quiet: with LOG_FORMAT=json the
    log stream carries JSON lines only (the banner's facts are in the worker's heartbeat)."""
    if settings.log_format == "json":
        instance.quiet = True


def enqueue(request: GenerationRequest) -> None:
    """Put a requeued request's task back on its model's queue, first in line: it had started.

    The task keeps the request id as its id, run after run: Flower merges a task's events by id, so
    its page stays the request's page, ending in the state of the run that finished it."""
    rid = request.request_id
    app.send_task(GENERATE_TASK, args=[rid], task_id=rid, queue=queue_name(request.model), priority=0)
