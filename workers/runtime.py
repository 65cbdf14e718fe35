"""The worker process's one engine at a time: started with MODEL, switched or unloaded on command.

workers/control.py creates the runtime when Celery starts the worker; remote-control commands
call switch() and unload(), which run in their own thread so the command returns at once. A
heartbeat publishes this worker's state throughout, loading and idle included, renews its
leases, reaps orphaned requests and carries out pending loads whose command was lost.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

import torch

from shared import admission, bus, fleet, redis_memory
from shared.messages import (
    LOAD_PENDING,
    PENDING_FRESH_S,
    UNLOAD_PENDING,
    GenerationRequest,
    ModelLoadState,
    ModelState,
)
from shared.redact import redact
from shared.settings import Settings
from workers.heartbeat import Heartbeat, new_worker_id
from workers.model_fit import check_fit, describe_model
from workers.model_loader import load_model
from workers.recovery import reap
from workers.service import EngineService
from workers.snapshot import Identity, worker_info
from workers.torch_thread import TorchThread
from workers.unserved import handle_unserved

log = logging.getLogger(__name__)

# Called with (queue to stop consuming or None, queue to start consuming or None) once a switch
# or an unload is decided; workers/control.py does it with remote control (cancel/add_consumer).
ConsumeFn = Callable[[str | None, str | None], None]


class WorkerRuntime:
    def __init__(
        self,
        settings: Settings,
        enqueue: Callable[[GenerationRequest], None],
        consume: ConsumeFn,
        node: str = "",
    ) -> None:
        self.settings = settings
        self.enqueue = enqueue
        self.consume = consume
        self.identity = Identity(worker_id=new_worker_id(), node=node, started_at=time.time())
        self.worker_id = self.identity.worker_id
        self.redis = bus.connect(settings.redis_url, settings.redis_tls_verify)
        self.service: EngineService | None = None
        self.loading: str | None = None  # the model being loaded, while a load runs
        self._lock = threading.Lock()  # one switch or unload at a time
        self.torch = TorchThread()  # every torch op of this process runs there
        self._heartbeat = Heartbeat(
            self.redis,
            self.worker_id,
            settings.heartbeat_interval_s,
            settings.worker_ttl_s,
            snapshot=lambda rate: worker_info(self.identity, self.service, self.loading, rate),
            tokens_generated=lambda: self.service.engine.stats.tokens_generated if self.service else 0,
            lease_ids=lambda: self.service.claimed_ids() if self.service else [],
            chores=[self._reap, self.unload_if_idle, self.pick_up_pending],
        )

    # --- start, switch, unload ---

    def start(self) -> None:
        """Load MODEL and start serving it; raises if it cannot load (the worker then exits)."""
        redis_memory.check_eviction_policy(self.redis, log)
        self._serve(self.settings.model, consume=False)  # the app already consumes MODEL's queue
        self._heartbeat.start()

    def switch(self, model: str) -> None:
        """Load `model` in place of the current one, in the background; progress goes to Redis."""
        threading.Thread(target=self._switch, args=(model,), name="switch-model", daemon=True).start()

    def unload(self, model: str) -> None:
        """Stop serving `model` (if this worker serves it) and free its memory, in the background."""
        threading.Thread(target=self._unload, args=(model,), name="unload-model", daemon=True).start()

    def stop(self) -> None:
        self._heartbeat.stop()
        if self.service is not None:
            self.service.stop()

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
                check_fit(facts, self.settings, freed_bytes=self.service.held_bytes() if self.service else 0)
                self._release()
                self._serve(model)
            except Exception as exc:  # any failure is reported with its reason; the worker lives on
                log.exception("loading %s failed", model)
                reason = redact(str(exc), keep=(model,))  # the log keeps the whole message
                self._publish(model, ModelLoadState.FAILED, "failed", 0.0, reason=reason)
                self._fail_orphans(model, f"model {model!r} failed to load: {reason}")
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
        others = [w for w in fleet.list_workers(self.redis) if w.worker_id != self.worker_id]
        if any(w.model == model for w in others):
            return
        failed = admission.fail_queued(self.redis, model, reason, self.settings.stream_ttl_s)
        if failed:
            log.warning("failed %d requests queued for %s: %s", failed, model, reason)

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

    def _publish(
        self, model: str, state: ModelLoadState, stage: str, percent: float,
        done_bytes: int = 0, total_bytes: int | None = None, reason: str | None = None,
    ) -> None:  # fmt: skip
        fleet.publish_model_state(
            self.redis,
            ModelState(
                model=model, worker_id=self.worker_id, state=state, stage=stage, progress=percent,
                bytes_downloaded=done_bytes, bytes_total=total_bytes, reason=reason, updated_at=time.time(),
            ),
        )  # fmt: skip

    # --- heartbeat chores ---

    def _reap(self) -> None:
        reap(self.redis, self.settings, self.enqueue)
        handle_unserved(self.redis, self.settings)

    def pick_up_pending(self) -> None:
        """Carry out a load or unload the API ordered for this worker whose remote-control command never
        arrived (a broadcast sent before this worker's consumer was listening is lost)."""
        if self.loading or self._lock.locked():
            return
        current = self.service.loaded.name if self.service else None
        for model, states in fleet.model_states(self.redis).items():
            for state in states:
                if state.worker_id != self.worker_id or time.time() - state.updated_at > PENDING_FRESH_S:
                    continue
                pending = (state.state, state.stage)
                if pending == (ModelLoadState.LOADING, LOAD_PENDING) and model != current:
                    log.info("carrying out the pending load of %s", model)
                    self.switch(model)
                    return
                if pending == (ModelLoadState.UNLOADED, UNLOAD_PENDING) and model == current:
                    log.info("carrying out the pending unload of %s", model)
                    self.unload(model)
                    return

    def unload_if_idle(self) -> None:
        """MODEL_IDLE_TTL: unload a model no request has used for that long."""
        ttl, svc = self.settings.model_idle_ttl_s, self.service
        if ttl <= 0 or svc is None or svc.num_active or self.loading:
            return
        if time.time() - max(svc.last_request_at, svc.started_at) > ttl:
            log.info("model %s idle for %.0f s: unloading it", svc.loaded.name, ttl)
            self.unload(svc.loaded.name)
