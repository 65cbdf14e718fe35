"""The ground truth for end-to-end tests: the built-in model run alone with HF `generate`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from devtools.servers import Process, start_api, start_exporter, start_worker
from shared import bus


@pytest.fixture(scope="session")
def reference(cache_dir: Path) -> Any:
    """The built-in model and tokenizer, loaded in the test process."""
    path = cache_dir / "models" / "torchweave-tiny"
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def greedy_text(reference: Any, prompt: str, max_new_tokens: int, ignore_eos: bool = False) -> str:
    """model.generate on the prompt alone, greedy; with ignore_eos it runs past EOS as requests can ask."""
    tokenizer, model = reference
    ids = torch.tensor([tokenizer.encode(prompt)])
    # An explicit eos_token_id=None overrides the model's own EOS.
    eos: dict[str, Any] = {"eos_token_id": None} if ignore_eos else {}
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        **eos,
    )
    text: str = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return text


ADMIN_KEY = "tw-e2e-admin-key"


@dataclass
class KeyedCluster:
    """A worker and two API processes with keys on (ADMIN_API_KEY), on a Redis database of their own."""

    urls: list[str]
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.urls[0]

    def key(self, name: str, role: str = "user", rpm: int | None = None, tpm: int | None = None) -> str:
        """A new key's secret, made through the API as an admin would."""
        body = {"name": name, "role": role, "rpm": rpm, "tpm": tpm}
        resp = requests.post(f"{self.url}/v1/keys", json=body, headers=auth(ADMIN_KEY), timeout=10)
        assert resp.status_code == 201, resp.text
        secret: str = resp.json()["secret"]
        return secret


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="session")
def keyed(server_env: dict[str, str], log_dir: Path) -> Iterator[KeyedCluster]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/8",
        "ADMIN_API_KEY": ADMIN_KEY,
        "MAX_BATCH": "4",
        "FAIR_SEATS": "2",
    }
    worker = start_worker(env, log_dir, "keyed-worker")
    apis = [start_api(env, log_dir) for _ in range(2)]
    yield KeyedCluster([url for _, url in apis], env)
    for proc, _ in apis:
        proc.stop()
    worker.stop()


METRICS_TOKEN = "tw-e2e-metrics-token"


@dataclass
class ObservedCluster:
    """A worker, an API of two gunicorn processes and the metrics exporter, logging JSON with METRICS_TOKEN
    set, on a Redis database of their own (so every count in it is this cluster's)."""

    url: str
    exporter_url: str
    env: dict[str, str]
    worker: Process
    api: Process


@pytest.fixture(scope="session")
def observed(server_env: dict[str, str], log_dir: Path) -> Iterator[ObservedCluster]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/14",
        "WEB_CONCURRENCY": "2",
        "LOG_FORMAT": "json",
        "METRICS_TOKEN": METRICS_TOKEN,
        "MAX_BATCH": "4",
    }
    bus.connect(env["REDIS_URL"]).flushdb()  # a REDIS_URL given from outside may hold an earlier run's
    worker = start_worker(env, log_dir, "observed-worker", log_level="info")
    api, url = start_api(env, log_dir)
    exporter, exporter_url = start_exporter(env, log_dir)
    yield ObservedCluster(url, exporter_url, env, worker, api)
    for proc in (exporter, api, worker):
        proc.stop()
