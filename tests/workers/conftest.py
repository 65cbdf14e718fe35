"""The built-in tiny model on CPU, fp32, loaded once for the worker and engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings
from workers.model_loader import LoadedModel, load_model


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    cache: Path = tmp_path_factory.mktemp("cache")
    return load_model("torchweave-tiny", Settings(cache_dir=cache, device="cpu", dtype="fp32"))
