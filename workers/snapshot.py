"""A worker's heartbeat record, built from what it serves (or loads) right now."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from shared.messages import WorkerInfo
from workers.service import EngineService


@dataclass(frozen=True)
class Identity:
    """What stays the same for a worker's whole life."""

    worker_id: str
    node: str  # the Celery node name
    started_at: float


def worker_info(
    who: Identity, service: EngineService | None, loading: str | None, tokens_per_s: float
) -> WorkerInfo:
    """The worker's identity, its model (or the one it loads), its slots and its engine's record."""
    common: dict[str, Any] = dict(
        worker_id=who.worker_id, host=socket.gethostname(), pid=os.getpid(), node=who.node,
        started_at=who.started_at, updated_at=time.time(), tokens_per_s=tokens_per_s,
    )  # fmt: skip
    if service is None:
        return WorkerInfo(
            **common, model=loading or "", state="loading" if loading else "idle", device="", dtype="",
            vocab_size=0, eos_token_id=None, max_batch=0, max_model_len=0, slots_used=0, slots_free=0,
            num_steps=0, largest_batch=0, tokens_generated=0,
        )  # fmt: skip
    engine, loaded, stats = service.engine, service.loaded, service.engine.stats
    return WorkerInfo(
        **common,
        model=loaded.name,
        state="loading" if loading else "ready",
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        vocab_size=len(loaded.tokenizer),
        eos_token_id=loaded.tokenizer.eos_token_id,
        max_batch=engine.max_batch,
        max_model_len=engine.max_model_len,
        slots_used=engine.max_batch - engine.num_free_slots,
        slots_free=engine.num_free_slots,
        num_steps=stats.num_steps,
        largest_batch=stats.largest_batch,
        tokens_generated=stats.tokens_generated,
        mean_request_s=service.mean_request_s,
        last_request_at=service.last_request_at,
        kv_cache_usage=engine.kv_cache_usage,
        kv_blocks_total=engine.blocks.num_blocks,
        prefix_cache_hit_rate=engine.prefix_cache_hit_rate,
        prefix_cache_queries=engine.blocks.num_prefix_queries,
        prefix_cache_hits=engine.blocks.num_prefix_hits,
        preemptions=engine.scheduler.num_preemptions,
        num_running=len(engine.scheduler.running),
        num_waiting=len(engine.scheduler.waiting),
    )
