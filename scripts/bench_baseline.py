"""The slot engine, the engine before paging, as a system of `scripts/bench.py`: its own code at
SLOT_ENGINE_COMMIT, unpacked with `git archive` and run in a subprocess on the same model directory,
prompts and arrivals, so "no regression" is measured in the same run, not remembered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts.bench_systems import RequestTimes, Run
from shared.settings import PROJECT_ROOT

SLOT_ENGINE_COMMIT = "9fe8f7fb593b837ee99dd68040d628d45cd9b64c"  # the last commit with one slot per request

# Runs inside the old tree: its own bench_systems.engine_in_process, its own engine.
_RUNNER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM
from scripts import bench_systems as systems
from workers.malloc_tuning import keep_freed_memory
keep_freed_memory()
job = json.loads(Path(sys.argv[2]).read_text())
model = AutoModelForCausalLM.from_pretrained(job["model_dir"], dtype=getattr(torch, job["dtype"]))
model = model.to(job["device"]).eval()
quiet = tqdm(disable=True)
warm = systems.Arrivals(job["concurrency"], job["concurrency"], 0.0)
limits = job["max_model_len"], job["max_batch_tokens"]
systems.engine_in_process(model, job["prompts"], 4, warm, *limits, quiet)
arrivals = systems.Arrivals(job["concurrency"], job["requests"], job["stagger_s"])
# The old engine_in_process is greedy by itself; the sampled workload sets its options' temperature.
greedy_options = systems.SamplingOptions
systems.SamplingOptions = lambda **kw: greedy_options(**{**kw, "temperature": job["temperature"]})
run = systems.engine_in_process(model, job["prompts"], job["new_tokens"], arrivals, *limits, quiet)
print(json.dumps({"requests": [vars(r) for r in run.requests], "wall_s": run.wall_s, "extra": run.extra}))
"""


def slot_engine(job: dict[str, object], work: Path) -> Run:
    """Run the slot engine on `job` (model_dir, dtype, device, prompts, new_tokens, concurrency, requests,
    stagger_s, max_model_len, max_batch_tokens); raises with its output when it fails."""
    tree = work / "slot-engine"
    tree.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", SLOT_ENGINE_COMMIT, "scripts", "workers", "shared", "devtools"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    job_path = work / "slot-engine-job.json"
    job_path.write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(tree), str(job_path)], capture_output=True, text=True, cwd=tree
    )
    if done.returncode != 0:
        raise RuntimeError(f"the slot engine failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    requests = [RequestTimes(**r) for r in result["requests"]]
    return Run("slot_engine", requests, result["wall_s"], result["extra"])
