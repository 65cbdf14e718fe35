"""Session fixtures: a real Redis, the built-in model on disk, a real Celery worker and the API over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import Process, start_api, start_worker, wait_for
from shared.settings import PROJECT_ROOT


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL when set, else a fresh embedded Redis on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory holding the built-in model, built once for every process of the session."""
    from workers.builtin_model import ensure_builtin_model

    path = tmp_path_factory.mktemp("cache")
    ensure_builtin_model(path)
    return path


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def server_env(redis_url: str, cache_dir: Path) -> dict[str, str]:
    """The environment every server process of the session gets."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL", "DEVICE", "DTYPE", "MAX_MODEL_LEN")}
    env.update(
        REDIS_URL=redis_url,
        CACHE_DIR=str(cache_dir),
        MAX_BATCH="8",
        HEARTBEAT_INTERVAL="0.5",
        SSE_HEARTBEAT="2",
        DEVICE="cpu",
        DTYPE="fp32",
        PYTHONPATH=str(PROJECT_ROOT),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        ENABLE_NOBATCH="1",  # test_pipeline compares batched text with the baseline's
    )
    return env


@pytest.fixture(scope="session")
def worker(server_env: dict[str, str], log_dir: Path) -> Iterator[Process]:
    proc = start_worker(server_env, log_dir)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def api_url(server_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    proc, url = start_api(server_env, log_dir)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def live_url(api_url: str, worker: Process) -> str:
    """The API's URL once a worker is live behind it."""
    import requests

    wait_for(lambda: requests.get(f"{api_url}/health", timeout=2).status_code == 200, 30, "health ok")
    return api_url
