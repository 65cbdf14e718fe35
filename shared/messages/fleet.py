"""What workers say about themselves: heartbeats, and each worker's progress with each model."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.messages.base import Message


class WorkerInfo(Message):
    """A worker's heartbeat: who it is, what it serves, and how busy it is.

    v2 renamed `hostname` to `node`: the Celery node name, where remote-control commands go.
    """

    v: Literal[2] = 2
    worker_id: str
    host: str
    pid: int
    model: str
    device: str
    dtype: str
    vocab_size: int
    eos_token_id: int | None
    max_batch: int
    max_model_len: int
    slots_used: int
    slots_free: int
    num_steps: int
    largest_batch: int
    tokens_generated: int
    started_at: float
    updated_at: float
    mean_request_s: float | None = None  # recent average time a request spends in the engine
    node: str = ""  # the Celery node name: where remote-control commands go
    tokens_per_s: float = 0.0  # tokens generated per second over the last heartbeat interval
    last_request_at: float = 0.0  # when this worker last took a request (0: never); picks who switches
    state: Literal["ready", "loading", "idle"] = "ready"  # idle: no model loaded
    kv_cache_usage: float = 0.0  # the share of KV-cache blocks held by running requests, 0..1
    kv_blocks_total: int = 0  # the KV-cache pool's size in blocks (block_size tokens each)
    prefix_cache_hit_rate: float = 0.0  # prompt tokens found already computed, over all prompt tokens
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache since start
    prefix_cache_hits: int = 0  # ... and of those, found
    preemptions: int = 0  # requests preempted (blocks ran out) and recomputed later, since start
    num_running: int = 0  # requests the engine steps now
    num_waiting: int = 0  # requests the engine holds but does not step yet (admitting, or preempted)


class ModelLoadState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


LOAD_PENDING = "requested"  # ModelState.stage of a load the API ordered that its worker has not begun
UNLOAD_PENDING = "unload requested"  # ModelState.stage of an unload the API ordered
# A pending load or unload counts this long: the API shows such a load as under way, and a worker
# whose remote-control command was lost still carries it out; an older one is abandoned.
PENDING_FRESH_S = 30.0


class ModelState(Message):
    """One worker's progress with one model; also the payload of /v1/models/events."""

    v: Literal[1] = 1
    model: str
    worker_id: str
    state: ModelLoadState
    stage: str = ""  # what the worker is doing now, in words
    progress: float = Field(default=0.0, ge=0.0, le=100.0)  # percent of the whole load
    bytes_downloaded: int = 0
    bytes_total: int | None = None
    reason: str | None = None  # why it failed
    updated_at: float
