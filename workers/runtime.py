"""The worker process's one engine service and heartbeat, started when the Celery worker starts."""

from __future__ import annotations

import logging

from shared import bus
from shared.settings import Settings, get_settings
from workers.heartbeat import Heartbeat, new_worker_id
from workers.model_loader import load_model
from workers.service import EngineService

log = logging.getLogger(__name__)
_service: EngineService | None = None
_heartbeat: Heartbeat | None = None


def start(settings: Settings | None = None) -> EngineService:
    """Load the model, start the engine loop and the heartbeat (idempotent)."""
    global _service, _heartbeat
    if _service is None:
        s = settings or get_settings()
        loaded = load_model(s.model, s.cache_dir, s.device, s.dtype)
        _service = EngineService(loaded, s, bus.connect(s.redis_url), new_worker_id())
        _service.start()
        _heartbeat = Heartbeat(_service)
        _heartbeat.start()
        log.info(
            "worker %s serves %s on %s (max batch %d, context %d)",
            _service.worker_id,
            s.model,
            loaded.device,
            s.max_batch,
            _service.max_model_len,
        )
    return _service


def service() -> EngineService:
    if _service is None:
        raise RuntimeError("the engine service has not started")
    return _service


def stop() -> None:
    global _service, _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
    if _service is not None:
        _service.stop()
    _service = _heartbeat = None
