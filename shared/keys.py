"""Every Redis key and Celery queue name TorchWeave uses, as functions."""

from __future__ import annotations

import re

PREFIX = "tw"
WORKER_PATTERN = f"{PREFIX}:worker:*"
LEASES = f"{PREFIX}:leases"  # sorted set: request id -> when its worker's lease on it runs out
DISPATCH = f"{PREFIX}:dispatch"  # sorted set: queued request id -> when its task was last enqueued
MODELS = f"{PREFIX}:models"  # set: every model name a load was asked for or a worker serves
MODEL_EVENTS = f"{PREFIX}:model_events"  # stream: ModelState changes, for GET /v1/models/events
LOAD_MODEL_COMMAND = "tw_load_model"  # Celery remote-control commands the workers register
UNLOAD_MODEL_COMMAND = "tw_unload_model"
GENERATE_TASK = "workers.tasks.generate"
GENERATE_NOBATCH_TASK = "workers.tasks.generate_nobatch"


def request_key(request_id: str) -> str:
    """Hash holding one request's parameters and state (expires after STREAM_TTL)."""
    return f"{PREFIX}:req:{request_id}"


def stream_key(request_id: str) -> str:
    """Redis Stream of one request's events: tokens, then done or error."""
    return f"{PREFIX}:stream:{request_id}"


def worker_key(worker_id: str) -> str:
    """A live worker's heartbeat (WorkerInfo JSON), expiring when heartbeats stop."""
    return f"{PREFIX}:worker:{worker_id}"


def cancel_key(request_id: str) -> str:
    """Set while a running request should stop; the worker reads it once per step."""
    return f"{PREFIX}:cancel:{request_id}"


def waiting_key(model: str) -> str:
    """Sorted set of the requests waiting for a worker of one model, scored by arrival time."""
    return f"{PREFIX}:waiting:{model}"


def queue_name(model: str) -> str:
    """The Celery queue that carries requests for one model."""
    return "model." + re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")


def model_state_key(model: str) -> str:
    """Hash of one model's state on each worker: worker id -> ModelState JSON."""
    return f"{PREFIX}:model:{model}"
