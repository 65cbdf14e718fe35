"""The worker process's one engine at a time: started with MODEL, switched or unloaded on command.

The Celery app calls start() once; remote-control commands call switch() and unload(), which
run in their own thread so the command returns at once. A heartbeat publishes this worker's
state throughout, loading and idle included, renews its leases and reaps orphaned requests.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from shared import bus, lifecycle
from shared.messages import (
    LOAD_REQUESTED,
    REQUEST_FRESH_S,
    UNLOAD_REQUESTED,
    GenerationRequest,
    ModelLoadState,
    ModelState,
    WorkerInfo,
)
from shared.settings import Settings
from workers.heartbeat import Heartbeat, new_worker_id
from workers.model_fit import check_fit, describe_model
from workers.model_loader import load_model
from workers.service import EngineService
from workers.torch_thread import TorchThread

log = logging.getLogger(__name__)

# Called with (queue to stop consuming or None, queue to start consuming or None) once a switch
# or an unload is decided; the Celery app does it with remote control (cancel/add_consumer).
ConsumeFn = Callable[[str | None, str | None], None]


class WorkerRuntime:
    def __init__(
        self, settings: Settings, enqueue: Callable[[GenerationRequest], None], consume: ConsumeFn
    ) -> None:
        self.settings = settings
        self.enqueue = enqueue
        self.consume = consume
        self.worker_id = new_worker_id()
        self.hostname = ""  # the Celery node name, set by the app once the worker is up
        self.redis = bus.connect(settings.redis_url)
        self.service: EngineService | None = None
        self.loading: str | None = None  # the model being loaded, while a load runs
        self.started_at = time.time()
        self._lock = threading.Lock()  # one switch or unload at a time
        self.torch = TorchThread()  # every torch op of this process runs there
        self._heartbeat = Heartbeat(self)

    # --- start, switch, unload ---

    def start(self) -> None:
        """Load MODEL and start serving it; raises if it cannot load (the worker then exits)."""
        self._serve(self.settings.model, consume=False)  # the app already consumes MODEL's queue
        self._heartbeat.start()

    def switch(self, model: str) -> None:
        """Load `model` in place of the current one, in the background; progress goes to Redis."""
        threading.Thread(target=self._switch, args=(model,), name="switch-model", daemon=True).start()

    def unload(self, model: str) -> None:
        """Stop serving `model` (if this worker serves it) and free its memory, in the background."""
        threading.Thread(target=self._unload, args=(model,), name="unload-model", daemon=True).start()

    def _switch(self, model: str) -> None:
        with self._lock:
            if self.loading == model:
                return
            current = self.service.loaded.name if self.service else None
            if model == current:
                self._publish(model, ModelLoadState.READY, "ready", 100.0)
                return
            self.loading = model
            try:
                self._publish(model, ModelLoadState.LOADING, "checking the model", 0.0)
                facts = describe_model(model, self.settings)
                check_fit(facts, self.settings, freed_bytes=self._held_bytes())
                self._release()
                self._serve(model)
            except Exception as exc:  # any failure is reported with its reason; the worker lives on
                log.exception("loading %s failed", model)
                self._publish(model, ModelLoadState.FAILED, "failed", 0.0, reason=str(exc))
                self._fail_orphans(model, f"model {model!r} failed to load: {exc}")
            finally:
                self.loading = None

    def _unload(self, model: str) -> None:
        with self._lock:
            if self.service is None or self.service.loaded.name != model:
                return
            self._release()
            self._fail_orphans(model, f"model {model!r} was unloaded")

    def _fail_orphans(self, model: str, reason: str) -> None:
        """Requests queued for a model no live worker serves or loads would wait forever: fail them."""
        others = [w for w in bus.list_workers(self.redis) if w.worker_id != self.worker_id]
        if any(w.model == model for w in others):
            return
        failed = lifecycle.fail_queued(self.redis, model, reason, self.settings.stream_ttl_s)
        if failed:
            log.warning("failed %d requests queued for %s: %s", failed, model, reason)

    def pick_up_requests(self) -> None:
        """Start a load or unload the API recorded for this worker whose remote-control command never
        arrived (a broadcast sent before this worker's consumer was listening is lost)."""
        if self.loading or self._lock.locked():
            return
        current = self.service.loaded.name if self.service else None
        for model, states in bus.model_states(self.redis).items():
            for state in states:
                if state.worker_id != self.worker_id or time.time() - state.updated_at > REQUEST_FRESH_S:
                    continue
                if (
                    state.state is ModelLoadState.LOADING
                    and state.stage == LOAD_REQUESTED
                    and model != current
                ):
                    log.info("picking up the load of %s that the API asked for", model)
                    self.switch(model)
                    return
                if (
                    state.state is ModelLoadState.UNLOADED
                    and state.stage == UNLOAD_REQUESTED
                    and model == current
                ):
                    log.info("picking up the unload of %s that the API asked for", model)
                    self.unload(model)
                    return

    def _serve(self, model: str, consume: bool = True) -> None:
        """Load `model`, start its engine and consume its queue."""

        def progress(stage: str, percent: float, done_bytes: int = 0, total_bytes: int | None = None) -> None:
            self._publish(model, ModelLoadState.LOADING, stage, percent, done_bytes, total_bytes)

        self.loading = model
        loaded = self.torch.call(load_model, model, self.settings, progress=progress)
        progress("starting the engine", 95.0)
        self.service = self.torch.call(
            EngineService, loaded, self.settings, self.redis, self.worker_id, self.enqueue
        )
        self.service.start(self.torch)
        self.loading = None
        if consume:
            self.consume(None, model)
        self._publish(model, ModelLoadState.READY, "ready", 100.0)
        log.info(
            "worker %s serves %s on %s (max batch %d, context %d)",
            self.worker_id, model, loaded.device, self.settings.max_batch, self.service.max_model_len,
        )  # fmt: skip

    def _release(self) -> None:
        """Stop consuming the current model's queue, hand its requests back, and free its memory."""
        svc = self.service
        if svc is None:
            return
        self.consume(svc.loaded.name, None)
        svc.close(timeout_s=30.0)
        self.service = None
        self._publish(svc.loaded.name, ModelLoadState.UNLOADED, "unloaded", 0.0)
        del svc
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _held_bytes(self) -> int:
        svc = self.service
        if svc is None:
            return 0
        model = svc.loaded.model
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        return int(weights + svc.engine.runner.kv.num_bytes)

    def _publish(
        self, model: str, state: ModelLoadState, stage: str, percent: float,
        done_bytes: int = 0, total_bytes: int | None = None, reason: str | None = None,
    ) -> None:  # fmt: skip
        bus.publish_model_state(
            self.redis,
            ModelState(
                model=model, worker_id=self.worker_id, state=state, stage=stage, progress=percent,
                bytes_downloaded=done_bytes, bytes_total=total_bytes, reason=reason, updated_at=time.time(),
            ),
        )  # fmt: skip

    # --- what the heartbeat reads ---

    def info(self, tokens_per_s: float) -> WorkerInfo:
        """A snapshot of the worker: identity, model (or what it loads), slots, and the engine's record."""
        svc = self.service
        common: dict[str, Any] = dict(
            worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(), hostname=self.hostname,
            started_at=self.started_at, updated_at=time.time(), tokens_per_s=tokens_per_s,
        )  # fmt: skip
        if svc is None:
            return WorkerInfo(
                **common, model=self.loading or "", state="loading" if self.loading else "idle", device="",
                dtype="", vocab_size=0, eos_token_id=None, max_batch=0, max_model_len=0, slots_used=0,
                slots_free=0, num_steps=0, largest_batch=0, tokens_generated=0,
            )  # fmt: skip
        engine, loaded, stats = svc.engine, svc.loaded, svc.engine.stats
        return WorkerInfo(
            **common,
            model=loaded.name,
            state="loading" if self.loading else "ready",
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
            mean_request_s=svc.mean_request_s,
            last_request_at=svc.last_request_at,
        )

    def claimed_ids(self) -> list[str]:
        return self.service.claimed_ids() if self.service else []

    def tokens_generated(self) -> int:
        return self.service.engine.stats.tokens_generated if self.service else 0

    def unload_if_idle(self) -> None:
        """MODEL_IDLE_TTL: unload a model no request has used for that long."""
        ttl, svc = self.settings.model_idle_ttl_s, self.service
        if ttl <= 0 or svc is None or svc.num_active or self.loading:
            return
        if time.time() - max(svc.last_request_at, svc.started_at) > ttl:
            log.info("model %s idle for %.0f s: unloading it", svc.loaded.name, ttl)
            self.unload(svc.loaded.name)

    def stop(self) -> None:
        self._heartbeat.stop()
        if self.service is not None:
            self.service.stop()


_runtime: WorkerRuntime | None = None


def start(
    settings: Settings, enqueue: Callable[[GenerationRequest], None], consume: ConsumeFn, hostname: str = ""
) -> WorkerRuntime:
    """Create this process's runtime and load MODEL (idempotent)."""
    global _runtime
    if _runtime is None:
        runtime = WorkerRuntime(settings, enqueue, consume)
        runtime.hostname = hostname
        runtime.start()
        _runtime = runtime
    return _runtime


def current() -> WorkerRuntime | None:
    return _runtime


def service() -> EngineService:
    if _runtime is None or _runtime.service is None:
        raise RuntimeError("no engine is serving on this worker now")
    return _runtime.service


def drain(timeout_s: float) -> None:
    """On SIGTERM: let running requests finish for up to timeout_s, then hand the rest back."""
    svc = _runtime.service if _runtime else None
    if svc is None:
        return

    def wait_then_hand_back() -> None:
        deadline = time.monotonic() + timeout_s
        while svc.num_active and time.monotonic() < deadline:
            time.sleep(0.1)
        if svc.num_active:
            log.warning("drain timeout: handing %d requests back to the queue", svc.num_active)
            svc.hand_back()

    threading.Thread(target=wait_then_hand_back, name="drain", daemon=True).start()


def stop() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.stop()
    _runtime = None
