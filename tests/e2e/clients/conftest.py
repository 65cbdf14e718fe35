"""Third-party clients run against the real server, offline: no hub, no telemetry, no cost-map download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before any client is imported: some read these at import time (litellm's cost map, HF's offline mode).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "DO_NOT_TRACK": "1",
    "OPENAI_API_KEY": "unused",
}
os.environ.update(OFFLINE_ENV)

MODEL = "torchweave-tiny"


@pytest.fixture(scope="session")
def model_dir(cache_dir: Path) -> Path:
    """The built-in model's files (its tokenizer is what lm-eval and guidellm load)."""
    return cache_dir / "models" / MODEL
