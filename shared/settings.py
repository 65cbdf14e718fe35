"""The one place that reads the environment: a frozen settings object shared by every process.

Every field is read from the environment variable named by its alias and validated by
pydantic-settings, so `MAX_BATCH=abc` or `ALLOW_PICKLE=maybe` stops a process at start with an
error naming the variable. An empty variable means its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

BUILTIN_MODEL = "torchweave-tiny"
BUILTIN_MODELS = (BUILTIN_MODEL, "torchweave-tiny2")  # built locally, no download: workers/builtin_model.py
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take; the message names the variable."""


def _env(name: str, default: Any, description: str = "", **constraints: Any) -> Any:
    """A setting read from the environment variable `name`."""
    return Field(default, validation_alias=name, description=description, **constraints)


class Settings(BaseSettings):
    """Every tunable of TorchWeave, read once from the environment."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_ignore_empty=True, validate_by_name=True, validate_by_alias=True
    )

    redis_url: str = _env("REDIS_URL", "redis://127.0.0.1:6379/0")
    model: str = _env("MODEL", BUILTIN_MODEL, min_length=1)
    cache_dir: Path = _env("CACHE_DIR", PROJECT_ROOT / ".cache")
    device: str = _env("DEVICE", "", "'' picks CUDA when present, else CPU")
    dtype: str = _env("DTYPE", "", "'' picks bf16 on CUDA, fp32 on CPU")
    model_dir: Path = _env("MODEL_DIR", PROJECT_ROOT / "models", "local models load from here only")
    allow_pickle: bool = _env("ALLOW_PICKLE", False, "load .bin (pickle) weights; off: safetensors only")
    trusted_models: Annotated[tuple[str, ...], NoDecode] = _env(
        "TRUSTED_MODELS", (), "the only models allowed trust_remote_code (comma-separated)"
    )
    autoload: bool = _env("AUTOLOAD", False, "a request for a model nobody serves switches a worker")
    unserved_timeout_s: float = _env(
        "UNSERVED_TIMEOUT", 60.0, "seconds a request may wait for a model no worker serves or loads", gt=0
    )
    model_idle_ttl_s: float = _env("MODEL_IDLE_TTL", 0.0, "unload a model unused this long (0: never)", ge=0)
    max_batch: int = _env("MAX_BATCH", 8, ge=1, le=4096)
    max_model_len: int = _env("MAX_MODEL_LEN", 0, "0: the model's own context length", ge=0)
    kv_cache_memory: str = _env(
        "KV_CACHE_MEMORY",
        "auto",
        "KV cache size: bytes (4GiB, 500MB), a fraction of free memory (0.5), or auto",
    )
    block_size: int = _env("BLOCK_SIZE", 16, "tokens per KV-cache block", ge=1, le=1024)
    prefix_caching: bool = _env("PREFIX_CACHING", True, "share the KV blocks of identical prompt prefixes")
    max_batch_tokens: int = _env("MAX_BATCH_TOKENS", 512, "tokens one engine step runs", ge=1)
    max_new_tokens_limit: int = _env("MAX_NEW_TOKENS_LIMIT", 4096, ge=1)
    stream_ttl_s: int = _env("STREAM_TTL", 3600, ge=1)
    heartbeat_interval_s: float = _env("HEARTBEAT_INTERVAL", 2.0, gt=0)
    sse_heartbeat_s: float = _env("SSE_HEARTBEAT", 15.0, gt=0)
    port: int = _env("PORT", 8000, ge=0, le=65535)
    flower_port: int = _env("FLOWER_PORT", 5555, ge=0, le=65535)
    flower_url: str = _env("FLOWER_URL", "", "where browsers reach Flower ('': FLOWER_PORT on the UI's host)")
    metrics_port: int = _env("METRICS_PORT", 9100, ge=0, le=65535)
    metrics_retention_s: float = _env(
        "METRICS_RETENTION", 86400.0, "seconds the exporter keeps a stopped worker's series", ge=0
    )
    num_workers: int = _env("WORKERS", 1, "worker processes `make run` starts", ge=0)
    max_queued: int = _env("MAX_QUEUED", 256, "waiting requests per model before 429", ge=1)
    max_attempts: int = _env("MAX_ATTEMPTS", 3, "workers a request may lose before it fails", ge=1)
    drain_timeout_s: float = _env("DRAIN_TIMEOUT", 30.0, "SIGTERM: finish running requests this long", ge=0)
    visibility_timeout_s: int = _env("VISIBILITY_TIMEOUT", 10, "redelivery of unacknowledged messages", ge=1)
    redispatch_after_s: float = _env(
        "REDISPATCH_AFTER", 30.0, "a request queued this long unclaimed gets its task sent again", gt=0
    )
    api_worker_class: Literal["gevent", "gthread"] = _env("API_WORKER_CLASS", "gevent")
    api_threads: int = _env("API_THREADS", 600, "open connections (streams) per API process", ge=1)
    public_url: str = _env("PUBLIC_URL", "", "base of stream_url / websocket_url; '' uses the request's host")
    body_timeout_s: float = _env("BODY_TIMEOUT", 10.0, "a request body must arrive within this", gt=0)
    max_connections_per_client: int = _env(
        "MAX_CONNECTIONS_PER_CLIENT", 128, "open connections per client address (0: no cap)", ge=0
    )
    enable_nobatch: bool = _env("ENABLE_NOBATCH", False, "serve /v1/generate_nobatch (it stalls the batch)")
    max_prompt_chars: int = _env(
        "MAX_PROMPT_CHARS", 200_000, "characters of prompt (or chat messages) one generation may send", ge=1
    )
    grammar_lexer_fuel: int = _env(
        "GRAMMAR_LEXER_FUEL", 50_000, "regex a JSON schema may build (llguidance's initial lexer fuel)", ge=1
    )
    grammar_step_fuel: int = _env(
        "GRAMMAR_STEP_FUEL", 200_000, "work one token's mask may take (llguidance's step lexer fuel)", ge=1
    )
    max_choices: int = _env("MAX_CHOICES", 64, "generations (prompts x n) one request may ask for", ge=1)
    failed_load_ttl_s: float = _env("FAILED_LOAD_TTL", 600.0, "how long a failed load stays listed", gt=0)
    host: str = _env("HOST", "127.0.0.1", "the interface the API, Flower and metrics bind to")
    admin_api_key: str = _env("ADMIN_API_KEY", "", "the bootstrap admin key; setting it turns keys on")
    flower_basic_auth: str = _env("FLOWER_BASIC_AUTH", "", "user:password for Flower")
    metrics_token: str = _env("METRICS_TOKEN", "", "bearer token Prometheus sends to scrape metrics")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = _env(
        "CORS_ORIGINS", (), "origins allowed to call the API from a browser (comma-separated; '' same-origin)"
    )
    redis_tls_verify: bool = _env("REDIS_TLS_VERIFY", True, "verify a rediss:// server's certificate")
    fair_seats: int = _env(
        "FAIR_SEATS", 2, "task threads past MAX_BATCH that let other keys' requests in", ge=0
    )
    session_ttl_s: int = _env("SESSION_TTL", 43200, "how long a browser session (cookie) lasts", ge=60)
    web_concurrency: int = _env("WEB_CONCURRENCY", 1, "API processes (gunicorn workers)", ge=1)
    log_format: Literal["text", "json"] = _env("LOG_FORMAT", "text", "json: one JSON object per log line")
    worker_alive_file: str = _env("WORKER_ALIVE_FILE", "", "a file the engine loop touches (healthchecks)")

    @field_validator("trusted_models", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(m.strip() for m in value.split(",") if m.strip())
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def keys_required(self) -> bool:
        """Every route but the health probes needs an API key (ADMIN_API_KEY is set)."""
        return bool(self.admin_api_key)

    @property
    def worker_ttl_s(self) -> int:
        """A worker whose heartbeat is older than this counts as dead."""
        return max(2, int(self.heartbeat_interval_s * 3))


class _MappingSettings(Settings):
    """Settings read from a given mapping only, never from the process environment."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> Any:
        return (init_settings,)


def _explain(exc: ValidationError) -> SettingsError:
    problems = [
        f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
        for err in exc.errors(include_url=False)
    ]
    return SettingsError("invalid setting: " + "; ".join(problems))


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from an environment mapping (os.environ when None); SettingsError naming the variable."""
    try:
        if env is None:
            return Settings()
        values: dict[str, Any] = {k: v for k, v in env.items() if v != ""}
        return _MappingSettings(**values)
    except ValidationError as exc:
        raise _explain(exc) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from os.environ on first use."""
    return settings_from_env()


LOOPBACK = ("127.", "::1", "localhost")


def is_public(host: str) -> bool:
    """Whether binding `host` lets other machines connect (anything but loopback)."""
    return not host.startswith(LOOPBACK)


def missing_credentials(settings: Settings) -> dict[str, str]:
    """The services ("api", "flower", "metrics") that HOST would expose without credentials, each with the
    variable that would give them; empty on a loopback HOST."""
    if not is_public(settings.host):
        return {}
    needed = {
        "api": ("ADMIN_API_KEY", settings.admin_api_key),
        "flower": ("FLOWER_BASIC_AUTH", settings.flower_basic_auth),
        "metrics": ("METRICS_TOKEN", settings.metrics_token),
    }
    return {service: variable for service, (variable, value) in needed.items() if not value}


def check_exposure(settings: Settings, service: str) -> None:
    """Refuse to serve `service` ("api", "flower" or "metrics") on a public interface without its
    credentials; SettingsError saying what to set."""
    variable = missing_credentials(settings).get(service)
    if variable:
        raise SettingsError(
            f"HOST={settings.host} would serve the {service} to every network this machine is on with no "
            f"credentials: set {variable}, or bind HOST=127.0.0.1"
        )
