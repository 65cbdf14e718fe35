"""Every Redis key and Celery queue name TorchWeave uses, as functions."""

from __future__ import annotations

import re

PREFIX = "tw"
WORKER_PATTERN = f"{PREFIX}:worker:*"
LEASES = f"{PREFIX}:leases"  # sorted set: request id -> when its worker's lease on it runs out
DISPATCH = f"{PREFIX}:dispatch"  # sorted set: queued request id -> when its task was last enqueued
MODELS = f"{PREFIX}:models"  # set: every model name a load was asked for or a worker serves
MODEL_EVENTS = f"{PREFIX}:model_events"  # stream: ModelState changes, for GET /v1/models/events
METRICS = f"{PREFIX}:metrics"  # hash: request counters and histogram buckets (shared/metrics.py)
API_KEYS = f"{PREFIX}:apikeys"  # hash: key id -> the SHA-256 of its secret (for listing and revoking)
LOAD_MODEL_COMMAND = "tw_load_model"  # Celery remote-control commands the workers register
UNLOAD_MODEL_COMMAND = "tw_unload_model"
GENERATE_TASK = "workers.tasks.generate"
GENERATE_NOBATCH_TASK = "workers.tasks.generate_nobatch"
# Celery task priorities on the Redis transport: 0 is served first. A key's k-th waiting request of a
# model is sent with priority min(k, LOWEST_PRIORITY), so a light user's request overtakes a flood.
PRIORITY_STEPS = list(range(10))
LOWEST_PRIORITY = PRIORITY_STEPS[-1]


def request_key(request_id: str) -> str:
    """Hash holding one request's parameters and state (expires after STREAM_TTL)."""
    return f"{PREFIX}:req:{request_id}"


def stream_key(request_id: str) -> str:
    """Redis Stream of one request's events: tokens, then done or error."""
    return f"{PREFIX}:stream:{request_id}"


def worker_key(worker_id: str) -> str:
    """A live worker's heartbeat (WorkerInfo JSON), expiring when heartbeats stop."""
    return f"{PREFIX}:worker:{worker_id}"


def timeline_key(request_id: str) -> str:
    """Stream of one request's timeline steps (shared/timeline.py); expires with the request."""
    return f"{PREFIX}:timeline:{request_id}"


def recent_ttft_key(model: str) -> str:
    """List of a model's most recent times to first token, in seconds, newest first (capped)."""
    return f"{PREFIX}:recent:ttft:{model}"


def cancel_key(request_id: str) -> str:
    """Set while a running request should stop; the worker reads it once per step."""
    return f"{PREFIX}:cancel:{request_id}"


def waiting_key(model: str) -> str:
    """Sorted set of the requests waiting for a worker of one model, scored by arrival time."""
    return f"{PREFIX}:waiting:{model}"


def queue_name(model: str) -> str:
    """The Celery queue that carries requests for one model."""
    return "model." + re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")


def arrivals_key(model: str) -> str:
    """Stream of the owners of newly admitted requests for a model (capped): wakes workers holding a
    task back for fair share."""
    return f"{PREFIX}:arrivals:{model}"


def owner_waiting_key(model: str, owner: str) -> str:
    """Sorted set of one owner's requests waiting for a model (as waiting_key): its fair-share rank."""
    return f"{PREFIX}:waiting:{model}:owner:{owner}"


def api_key_key(digest: str) -> str:
    """String: the ApiKey JSON of the key whose secret has this SHA-256 (hex)."""
    return f"{PREFIX}:apikey:{digest}"


def session_key(digest: str) -> str:
    """String: the key id a browser session (cookie) stands for, by the cookie's SHA-256; expires."""
    return f"{PREFIX}:session:{digest}"


def rate_key(key_id: str, kind: str, window: int) -> str:
    """String counter: requests or tokens ("req" or "tok") a key used in one minute (window = unix minute)."""
    return f"{PREFIX}:rate:{key_id}:{kind}:{window}"


def model_state_key(model: str) -> str:
    """Hash of one model's state on each worker: worker id -> ModelState JSON."""
    return f"{PREFIX}:model:{model}"


def metrics_once_key(flush_id: str) -> str:
    """String set by one flush of metrics, or one round trip of fenced writes (expires): the same writes
    applied again add nothing."""
    return f"{PREFIX}:metrics:once:{flush_id}"
