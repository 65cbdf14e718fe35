"""The worker process's engine service, heartbeat and reaper, started when the Celery worker starts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared import bus
from shared.messages import GenerationRequest
from shared.settings import Settings
from workers.heartbeat import Heartbeat, new_worker_id
from workers.model_loader import load_model
from workers.service import EngineService

log = logging.getLogger(__name__)
_service: EngineService | None = None
_heartbeat: Heartbeat | None = None


def start(settings: Settings, enqueue: Callable[[GenerationRequest], None]) -> EngineService:
    """Load the model, start the engine loop and the heartbeat, which also reaps (idempotent)."""
    global _service, _heartbeat
    if _service is None:
        loaded = load_model(settings.model, settings.cache_dir, settings.device, settings.dtype)
        client = bus.connect(settings.redis_url)
        _service = EngineService(loaded, settings, client, new_worker_id(), enqueue)
        _service.start()
        _heartbeat = Heartbeat(_service)
        _heartbeat.start()
        log.info(
            "worker %s serves %s on %s (max batch %d, context %d)",
            _service.worker_id,
            settings.model,
            loaded.device,
            settings.max_batch,
            _service.max_model_len,
        )
    return _service


def service() -> EngineService:
    if _service is None:
        raise RuntimeError("the engine service has not started")
    return _service


def drain(timeout_s: float) -> None:
    """On SIGTERM: let running requests finish for up to timeout_s, then hand the rest back."""
    svc = _service
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
    global _service, _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
    _heartbeat = None
    if _service is not None:
        _service.stop()
    _service = None
