"""The one place that reads the environment: a frozen settings object shared by every process."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

BUILTIN_MODEL = "torchweave-tiny"
BUILTIN_MODELS = (
    BUILTIN_MODEL,
    "torchweave-tiny2",
)  # built locally, no download: see workers/builtin_model.py
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    return int(raw) if raw.strip() else default


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass(frozen=True)
class Settings:
    """Every tunable of TorchWeave, read once from the environment."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    model: str = BUILTIN_MODEL
    cache_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".cache")
    device: str = ""  # "" picks CUDA when present, else CPU
    dtype: str = ""  # "" picks bf16 on CUDA, fp32 on CPU
    model_dir: Path = field(
        default_factory=lambda: PROJECT_ROOT / "models"
    )  # local models load from here only
    allow_pickle: bool = False  # load .bin (pickle) weights; off: safetensors only
    trusted_models: tuple[str, ...] = ()  # the only models allowed trust_remote_code
    autoload: bool = False  # a request for a model nobody serves switches the least recently used worker
    model_idle_ttl_s: float = 0.0  # unload a model unused this long (0: never)
    max_batch: int = 8
    max_model_len: int = 0  # 0: the model's own context length, capped at 2048
    max_batch_tokens: int = 512  # tokens one engine step runs: decodes first, prefill chunks fill the rest
    max_new_tokens_limit: int = 4096
    stream_ttl_s: int = 3600
    heartbeat_interval_s: float = 2.0
    sse_heartbeat_s: float = 15.0
    port: int = 8000
    flower_port: int = 5555
    metrics_port: int = 9100
    num_workers: int = 1  # worker processes `make run` starts
    max_queued: int = 256  # waiting requests per model before the API answers 429
    max_attempts: int = 3  # workers a request may lose (crash) before it fails
    drain_timeout_s: float = 30.0  # SIGTERM: how long a worker finishes its requests before handing them back
    visibility_timeout_s: int = 10  # Celery (Redis broker): when an unacknowledged message is delivered again
    redispatch_after_s: float = (
        30.0  # a request queued this long without being claimed gets its task sent again
    )
    api_worker_class: str = "gevent"  # gunicorn worker class of the API (gevent or gthread)
    api_threads: int = 600  # gthread: threads (open streams) per API process; gevent: connections
    public_url: str = ""  # base of stream_url / websocket_url; "" uses the request's host

    @property
    def worker_ttl_s(self) -> int:
        """A worker whose heartbeat is older than this counts as dead."""
        return max(2, int(self.heartbeat_interval_s * 3))


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    """Build settings from an environment mapping (os.environ when None)."""
    e = dict(os.environ if env is None else env)
    defaults = Settings()
    return Settings(
        redis_url=e.get("REDIS_URL") or defaults.redis_url,
        model=e.get("MODEL") or defaults.model,
        cache_dir=Path(e["CACHE_DIR"]) if e.get("CACHE_DIR") else defaults.cache_dir,
        device=e.get("DEVICE", ""),
        dtype=e.get("DTYPE", ""),
        model_dir=Path(e["MODEL_DIR"]) if e.get("MODEL_DIR") else defaults.model_dir,
        allow_pickle=e.get("ALLOW_PICKLE", "") == "1",
        trusted_models=tuple(m.strip() for m in e.get("TRUSTED_MODELS", "").split(",") if m.strip()),
        autoload=e.get("AUTOLOAD", "") == "1",
        model_idle_ttl_s=_float(e, "MODEL_IDLE_TTL", defaults.model_idle_ttl_s),
        max_batch=_int(e, "MAX_BATCH", defaults.max_batch),
        max_model_len=_int(e, "MAX_MODEL_LEN", defaults.max_model_len),
        max_batch_tokens=_int(e, "MAX_BATCH_TOKENS", defaults.max_batch_tokens),
        max_new_tokens_limit=_int(e, "MAX_NEW_TOKENS_LIMIT", defaults.max_new_tokens_limit),
        stream_ttl_s=_int(e, "STREAM_TTL", defaults.stream_ttl_s),
        heartbeat_interval_s=_float(e, "HEARTBEAT_INTERVAL", defaults.heartbeat_interval_s),
        sse_heartbeat_s=_float(e, "SSE_HEARTBEAT", defaults.sse_heartbeat_s),
        port=_int(e, "PORT", defaults.port),
        flower_port=_int(e, "FLOWER_PORT", defaults.flower_port),
        metrics_port=_int(e, "METRICS_PORT", defaults.metrics_port),
        num_workers=_int(e, "WORKERS", defaults.num_workers),
        max_queued=_int(e, "MAX_QUEUED", defaults.max_queued),
        max_attempts=_int(e, "MAX_ATTEMPTS", defaults.max_attempts),
        drain_timeout_s=_float(e, "DRAIN_TIMEOUT", defaults.drain_timeout_s),
        visibility_timeout_s=_int(e, "VISIBILITY_TIMEOUT", defaults.visibility_timeout_s),
        redispatch_after_s=_float(e, "REDISPATCH_AFTER", defaults.redispatch_after_s),
        api_worker_class=e.get("API_WORKER_CLASS") or defaults.api_worker_class,
        api_threads=_int(e, "API_THREADS", defaults.api_threads),
        public_url=e.get("PUBLIC_URL", "").rstrip("/"),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from os.environ on first use."""
    return settings_from_env()
