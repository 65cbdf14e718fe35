"""guidellm (vLLM's benchmark tool) against the real server: a bounded synthetic run, offline, with the
built-in model's tokenizer; its report must count successful requests and real token timings.

guidellm streams with `stream_options.continuous_usage_stats` on every request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.clients.conftest import MODEL

NUM_REQUESTS = 8


@pytest.mark.compat
def test_guidellm_synchronous_run_reports_successful_requests(
    live_url: str, model_dir: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "guidellm", "run",
        "--backend", f"kind=openai_http,target={live_url},model={MODEL},request_format=/v1/completions",
        "--profile", "kind=synchronous",
        "--constraint", f"kind=max_requests,count={NUM_REQUESTS}",
        "--data", "kind=synthetic_text,prompt_tokens=32,output_tokens=16",
        "--tokenizer", f"kind=huggingface_auto,model={model_dir}",
        "--output", f"kind=json,path={report}",
        "--output", "kind=console",
        "--disable-progress",
    ]  # fmt: skip
    run = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    print(run.stdout[-6000:], run.stderr[-3000:])
    assert run.returncode == 0, run.stderr[-3000:]
    [benchmark] = json.loads(report.read_text())["benchmarks"]
    totals = benchmark["metrics"]["request_totals"]
    assert totals["successful"] == NUM_REQUESTS and totals["errored"] == 0, totals
    tokens = benchmark["metrics"]["output_token_count"]["successful"]
    assert tokens["total_sum"] == NUM_REQUESTS * 16, tokens
