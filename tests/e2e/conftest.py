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

from devtools.servers import start_api, start_worker


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
