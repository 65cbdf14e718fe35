"""guidellm (vLLM's benchmark tool) against the real server: bounded synthetic runs, offline, with the
built-in model's tokenizer; each report must count every request as successful, with its output tokens.

guidellm streams with `stream_options.continuous_usage_stats` on every request. A small synchronous run is
part of the suite; a concurrent one, slower, runs with `make compat`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clients.conftest import MODEL, OFFLINE_ENV

OUTPUT_TOKENS = 16


def run_guidellm(url: str, model_dir: Path, report: Path, profile: str, num_requests: int) -> dict[str, Any]:
    """One guidellm run against the server; returns its only benchmark from the JSON report."""
    cmd = [
        sys.executable, "-m", "guidellm", "run",
        "--backend", f"kind=openai_http,target={url},model={MODEL},request_format=/v1/completions",
        "--profile", profile,
        "--constraint", f"kind=max_requests,count={num_requests}",
        "--data", f"kind=synthetic_text,prompt_tokens=32,output_tokens={OUTPUT_TOKENS}",
        "--tokenizer", f"kind=huggingface_auto,model={model_dir}",
        "--output", f"kind=json,path={report}",
        "--output", "kind=console",
        "--disable-progress",
    ]  # fmt: skip
    env = {**os.environ, **OFFLINE_ENV}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout[-8000:])  # its tables: requests/s, TTFT, ITL (pytest -s shows them)
    assert run.returncode == 0, run.stderr[-3000:]
    [benchmark] = json.loads(report.read_text())["benchmarks"]
    return benchmark


def assert_all_succeeded(benchmark: dict[str, Any], num_requests: int) -> None:
    totals = benchmark["metrics"]["request_totals"]
    assert totals["successful"] == num_requests and totals["errored"] == 0, totals
    tokens = benchmark["metrics"]["output_token_count"]["successful"]
    assert tokens["total_sum"] == num_requests * OUTPUT_TOKENS, tokens


def test_guidellm_synchronous_run(live_url: str, model_dir: Path, tmp_path: Path) -> None:
    benchmark = run_guidellm(live_url, model_dir, tmp_path / "report.json", "kind=synchronous", 8)
    assert_all_succeeded(benchmark, 8)


@pytest.mark.compat
def test_guidellm_concurrent_run(live_url: str, model_dir: Path, tmp_path: Path) -> None:
    benchmark = run_guidellm(live_url, model_dir, tmp_path / "report.json", "kind=concurrent,streams=8", 64)
    assert_all_succeeded(benchmark, 64)
