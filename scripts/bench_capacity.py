"""What paging buys, measured on one seeded random-weight model: issue 18's memory and preemption checks.

  memory      The KV budget of a slot engine with --slots slots of --max-model-len tokens (4 x 8192 by
              default), given to both engines. One wave of requests with mixed prompt lengths (mostly
              short, then a few of 1024 and 4096 tokens) arrives at once. Reported per engine: the most
              requests running at once, tokens/s and wall time. The slot engine runs from its own
              commit (scripts/bench_baseline.py), on the same model directory and prompts.
  preemption  A KV budget too small for every request at once (--preemption-blocks blocks). Every request
              must finish, and each one's greedy tokens must equal those of the same request run alone.

Writes JSON (default bench-results/<shape>-capacity.json) and prints a summary; exits 1 when a check fails.

    .venv/bin/python scripts/bench_capacity.py --shape small
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm

from scripts import bench_baseline
from scripts import bench_systems as systems
from shared.settings import PROJECT_ROOT
from workers.builtin_model import SHAPES, random_model
from workers.engine import LLMEngine, SamplingOptions
from workers.engine.engine import DEFAULT_BLOCK_SIZE
from workers.malloc_tuning import keep_freed_memory


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--slots", type=int, default=4, help="the slot engine's slots: the shared KV budget")
    p.add_argument("--short-requests", type=int, default=60, help="32-token prompts in the memory wave")
    p.add_argument("--long-prompts", default="1024,1024,1024,4096", help="the wave's long prompt lengths")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--max-batch-tokens", type=int, default=512)
    p.add_argument("--preemption-requests", type=int, default=16)
    p.add_argument("--preemption-new-tokens", type=int, default=64)
    p.add_argument("--preemption-blocks", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args()


def random_prompts(lengths: list[int], vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, vocab) for _ in range(n - 1)] for n in lengths]


def memory_wave(model: Any, model_dir: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Both engines on one budget; every request arrives at once (as many clients as requests)."""
    long = [int(x) for x in args.long_prompts.split(",") if x]
    # The long ones come last, so their chunked prefill does not hold the short ones back.
    lengths = [32] * args.short_requests + long
    prompts = random_prompts(lengths, model.config.vocab_size, args.seed)
    n = len(prompts)
    blocks = args.slots * -(-args.max_model_len // DEFAULT_BLOCK_SIZE)
    wave = systems.Arrivals(n, n, 0.0)
    bar = tqdm(total=n * args.new_tokens, desc="paged engine", unit="tok", dynamic_ncols=True)
    with bar:
        paged = systems.engine_in_process(
            model, prompts, args.new_tokens, wave, args.max_model_len, args.max_batch_tokens, bar,
            prefix_caching=True, num_blocks=blocks,
        )  # fmt: skip
    print(f"{'slot engine':>12}: commit {bench_baseline.SLOT_ENGINE_COMMIT[:10]} in a subprocess", flush=True)
    job = dict(
        model_dir=str(model_dir), dtype="float32", device="cpu", prompts=prompts, new_tokens=args.new_tokens,
        concurrency=args.slots, requests=n, stagger_s=0.0, max_model_len=args.max_model_len,
        max_batch_tokens=args.max_batch_tokens,
    )  # fmt: skip
    slots = bench_baseline.slot_engine(job, work)

    def summary(run: systems.Run, at_once: int) -> dict[str, Any]:
        tokens = sum(r.num_tokens for r in run.requests)
        return {
            "requests": len(run.requests),
            "finished": sum(r.num_tokens == args.new_tokens for r in run.requests),
            "running_at_once": at_once,
            "largest_batch": run.extra["largest_batch"],
            "tokens_per_s": round(tokens / run.wall_s, 2),
            "wall_s": round(run.wall_s, 2),
        }

    out = {
        "kv_budget_blocks": blocks,
        "kv_budget_tokens": blocks * DEFAULT_BLOCK_SIZE,
        "prompt_lengths": sorted(set(lengths)),
        "paged": summary(paged, paged.extra["most_running"]),
        "slot_engine": summary(slots, slots.extra["largest_batch"]),
    }
    out["running_ratio"] = round(out["paged"]["running_at_once"] / out["slot_engine"]["running_at_once"], 2)
    out["throughput_ratio"] = round(out["paged"]["tokens_per_s"] / out["slot_engine"]["tokens_per_s"], 2)
    return out


@torch.inference_mode()
def generate(engine: LLMEngine, prompts: dict[str, list[int]], opts: SamplingOptions) -> dict[str, list[int]]:
    """Run every prompt to its end together; their tokens by id."""
    tokens: dict[str, list[int]] = {rid: [] for rid in prompts}
    for rid, prompt in prompts.items():
        engine.add_request(rid, prompt, opts)
    while engine.has_work():
        for out in engine.step():
            if out.token_id is not None:
                tokens[out.seq_id].append(out.token_id)
    return tokens


def preemption(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Everyone at once in too few blocks, against each alone in plenty."""
    n, new = args.preemption_requests, args.preemption_new_tokens
    ids = random_prompts([32] * n, model.config.vocab_size, args.seed + 1)
    prompts = {str(i): p for i, p in enumerate(ids)}
    opts = SamplingOptions(max_new_tokens=new, temperature=0.0, ignore_eos=True)
    need = -(-(32 + new) // DEFAULT_BLOCK_SIZE)
    tight = LLMEngine(model, n, 32 + new, set(), args.max_batch_tokens, args.preemption_blocks)
    start = time.perf_counter()
    together = generate(tight, prompts, opts)
    wall = time.perf_counter() - start
    roomy = LLMEngine(model, 1, 32 + new, set(), args.max_batch_tokens, need, enable_prefix_caching=False)
    alone = {}
    for rid, prompt in tqdm(prompts.items(), desc="each alone", dynamic_ncols=True):
        alone.update(generate(roomy, {rid: prompt}, opts))
    return {
        "requests": n,
        "kv_blocks": args.preemption_blocks,
        "blocks_all_at_once_need": n * need,
        "preemptions": tight.scheduler.num_preemptions,
        "finished": sum(len(t) == new for t in together.values()),
        "identical_to_alone": sum(together[rid] == alone[rid] for rid in prompts),
        "wall_s": round(wall, 2),
    }


def main() -> int:
    args = parse_args()
    keep_freed_memory()
    torch.manual_seed(args.seed)
    model = random_model(args.shape, seed=args.seed, initializer_range=0.02).eval()
    model.config.max_position_embeddings = args.max_model_len  # rotary positions have no table to outgrow
    work = Path(tempfile.mkdtemp(prefix="torchweave-capacity-"))
    model_dir = work / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    report: dict[str, Any] = {"shape": args.shape, "device": "cpu", "dtype": "float32"}
    report["torch_threads"] = torch.get_num_threads()
    report["memory"] = memory_wave(model, model_dir, args, work)
    report["preemption"] = preemption(model, args)
    out = args.out or PROJECT_ROOT / "bench-results" / f"{args.shape}-capacity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    mem, pre = report["memory"], report["preemption"]
    print(json.dumps(report, indent=2))
    checks = {
        "memory: paged runs >= 8x the slot engine's requests at once": mem["running_ratio"] >= 8,
        "memory: every request finished in both": mem["paged"]["finished"]
        == mem["slot_engine"]["finished"]
        == mem["paged"]["requests"],
        "preemption: preempted at least once": pre["preemptions"] > 0,
        "preemption: all finished, greedy-identical to alone": pre["finished"]
        == pre["identical_to_alone"]
        == pre["requests"],
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"wrote {out}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
