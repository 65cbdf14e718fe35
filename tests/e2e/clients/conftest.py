"""Third-party clients run against the real server, offline: no hub, no telemetry, no cost-map download.

The offline environment is set per test module (after the cluster has taken its own environment), and a
client that reads it at import time (litellm's cost map) is imported inside its tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LANGSMITH_TRACING": "false",
    "DO_NOT_TRACK": "1",
}

MODEL = "torchweave-tiny"


@pytest.fixture(scope="module", autouse=True)
def offline(server_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The offline environment, for this module's tests only (server_env is built first, without it)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE_ENV.items():
            patch.setenv(name, value)
        yield OFFLINE_ENV


@pytest.fixture(scope="session")
def model_dir(cache_dir: Path) -> Path:
    """The built-in model's files (its tokenizer is what lm-eval and guidellm load)."""
    return cache_dir / "models" / MODEL
