"""Engine benchmark: our engine and our full server side by side with Hugging Face, in one run.

One seeded random-weight Llama of a chosen shape; the same seeded prompts go to every system;
EOS is off so every request makes exactly --new-tokens tokens; each system is warmed up first
and the warm-up is not timed. Systems:

  hf_one_at_a_time   model.generate, one request at a time (--sequential-requests of them)
  hf_static          model.generate on one static batch of --concurrency prompts
  hf_generate_batch  model.generate_batch, transformers' continuous batching (--generate-batch-requests)
  engine             our LLMEngine in-process, requests arriving staggered at fixed concurrency
  server             HTTP submit, Redis, a Celery worker and SSE, with the same arrivals

Arrivals (engine and server): --concurrency clients, each sending its requests back to back.
Their first requests are spread over half of one request's lifetime (estimated from a warm-up
decode step), so arrivals stay spread out, as in a serving steady state, and a static batch
could not serve them. Each client sends --requests / --concurrency requests (default 6).

Writes JSON and a PNG chart (default bench-results/<shape>.{json,png}) and prints a table.

    .venv/bin/python scripts/bench.py --shape small --concurrency 32 --prompt-len 32 --new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tqdm import tqdm

from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import start_api, start_worker
from scripts import bench_systems as systems
from shared.settings import PROJECT_ROOT
from workers.builtin_model import SHAPES, build_tokenizer, random_model
from workers.malloc_tuning import keep_freed_memory
from workers.model_loader import pick_device, pick_dtype

ALL_SYSTEMS = ["hf_one_at_a_time", "hf_static", "hf_generate_batch", "engine", "server"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument(
        "--requests", type=int, default=0, help="engine and server requests (default 6 x concurrency)"
    )
    p.add_argument(
        "--stagger-ms",
        type=float,
        default=-1.0,
        help="gap between the clients' first requests (default: auto)",
    )
    p.add_argument("--sequential-requests", type=int, default=4)
    p.add_argument("--generate-batch-requests", type=int, default=8)
    p.add_argument("--max-batch-tokens", type=int, default=512)
    p.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    p.add_argument("--device", default="", help="default: cuda when present, else cpu")
    p.add_argument("--dtype", default="", help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (the chart goes next to it)")
    return p.parse_args()


def make_texts(n: int, prompt_len: int, seed: int) -> list[str]:
    """Seeded ASCII prompts: with the byte-level tokenizer, BOS plus prompt_len - 1 tokens each."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + "     "
    return ["".join(rng.choice(alphabet) for _ in range(prompt_len - 1)) for _ in range(n)]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(run: systems.Run) -> dict[str, Any]:
    ttft = [r.token_times[0] - r.arrival for r in run.requests if r.token_times]
    itl = [b - a for r in run.requests for a, b in zip(r.token_times, r.token_times[1:], strict=False)]
    tokens = sum(r.num_tokens for r in run.requests)
    return {
        "system": run.system,
        "requests": len(run.requests),
        "output_tokens": tokens,
        "wall_s": round(run.wall_s, 3),
        "tokens_per_s": round(tokens / run.wall_s, 2),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "itl_p50_s": percentile(itl, 50),
        "itl_p99_s": percentile(itl, 99),
        **run.extra,
    }


@torch.inference_mode()
def prefill_time(model: Any, prompt: list[int], repeats: int = 5) -> float:
    """Median time of one prompt's forward pass alone: the floor under time to first token."""
    ids = torch.tensor([prompt], device=model.device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(input_ids=ids, logits_to_keep=1)
        systems._sync(model.device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def auto_stagger(model: Any, prompts: list[list[int]], args: argparse.Namespace, max_model_len: int) -> float:
    """Seconds between the clients' first requests: half a request's lifetime (new_tokens full-batch
    decode steps, timed in a warm-up run) spread over the clients."""
    warm = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
    run = systems.engine_in_process(
        model, prompts, 8, warm, max_model_len, args.max_batch_tokens, tqdm(disable=True)
    )
    step_s = float(run.extra.get("full_batch_step_s_p50") or 0.0)
    return step_s * args.new_tokens / 2 / args.concurrency


def start_server(
    model_dir: Path, args: argparse.Namespace, max_model_len: int, log_dir: Path
) -> tuple[Any, str]:
    redis_server = EmbeddedRedis(log_dir / "redis").start()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "MODEL": str(model_dir),
        "MAX_BATCH": str(args.concurrency),
        "MAX_MODEL_LEN": str(max_model_len),
        "MAX_BATCH_TOKENS": str(args.max_batch_tokens),
        "MAX_QUEUED": str(max(256, args.requests)),
        "DEVICE": args.device,
        "DTYPE": args.dtype,
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    worker = start_worker(env, log_dir)
    api, url = start_api(env, log_dir)
    return (redis_server, worker, api), url


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b:
        return None
    return round(a["tokens_per_s"] / b["tokens_per_s"], 2)


def write_chart(results: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["system"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].bar(names, [r["tokens_per_s"] for r in results], color="#3b6ea5")
    axes[0].set_title("output tokens/s (higher is better)")
    for ax, key, label in (
        (axes[1], "ttft", "time to first token (s)"),
        (axes[2], "itl", "inter-token latency (s)"),
    ):
        p50 = [r[f"{key}_p50_s"] or 0 for r in results]
        p99 = [r[f"{key}_p99_s"] or 0 for r in results]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#3b6ea5")
        ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99", color="#e0a030")
        ax.set_xticks(list(xs), names)
        ax.set_title(label)
        ax.legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    args = parse_args()
    keep_freed_memory()  # as the worker does: the comparison runs under the same allocator settings
    args.requests = args.requests or 6 * args.concurrency
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(wanted) - set(ALL_SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems: {sorted(unknown)}; choose from {ALL_SYSTEMS}")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    args.device, args.dtype = str(device), str(dtype).removeprefix("torch.")
    out = args.out or PROJECT_ROOT / "bench-results" / f"{args.shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    max_model_len = args.prompt_len + args.new_tokens + 8

    print(f"building the random-weight '{args.shape}' model on {device} ({dtype})", flush=True)
    model = random_model(
        args.shape, seed=args.seed, initializer_range=0.02, device=device, dtype=dtype
    ).eval()
    work = Path(tempfile.mkdtemp(prefix="torchweave-bench-"))
    model_dir = work / "model"
    build_tokenizer(model_dir, vocab_size=model.config.vocab_size)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = make_texts(max(args.concurrency, args.requests), args.prompt_len, args.seed)
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    assert all(len(p) == args.prompt_len for p in prompts), "a prompt did not tokenize to --prompt-len"
    if args.stagger_ms < 0:
        args.stagger_ms = round(1000 * auto_stagger(model, prompts, args, max_model_len), 1)
        print(f"clients start {args.stagger_ms} ms apart", flush=True)
    arrivals = systems.Arrivals(args.concurrency, args.requests, args.stagger_ms / 1000)
    n_seq, n_gb = min(args.sequential_requests, len(prompts)), min(args.generate_batch_requests, len(prompts))
    warm = prompts[:2]

    def bar(system: str, total: int) -> tqdm:
        return tqdm(total=total, desc=f"{system:>18}", unit="tok", dynamic_ncols=True)

    runs: dict[str, systems.Run] = {}
    silent = tqdm(disable=True)
    for system in wanted:
        if system.startswith("hf_"):
            # The engine (auto stagger or an earlier system) switched attention to its own; HF runs pure HF.
            model.set_attn_implementation("sdpa")
        if system == "hf_one_at_a_time":
            systems.hf_generate(model, warm[:1], 4, silent, "")
            with bar(system, n_seq * args.new_tokens) as b:
                runs[system] = systems.hf_one_at_a_time(model, prompts[:n_seq], args.new_tokens, b)
        elif system == "hf_static":
            systems.hf_generate(model, prompts[: args.concurrency], 4, silent, "")
            with bar(system, args.concurrency * args.new_tokens) as b:
                runs[system] = systems.hf_generate(
                    model, prompts[: args.concurrency], args.new_tokens, b, "hf_static"
                )
        elif system == "hf_generate_batch":
            systems.hf_generate_batch(model, warm, 4, silent)
            with bar(system, n_gb * args.new_tokens) as b:
                runs[system] = systems.hf_generate_batch(model, prompts[:n_gb], args.new_tokens, b)
        elif system == "engine":
            warm_arrivals = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
            systems.engine_in_process(
                model, prompts, 4, warm_arrivals, max_model_len, args.max_batch_tokens, silent
            )
            with bar(system, args.requests * args.new_tokens) as b:
                runs[system] = systems.engine_in_process(
                    model, prompts, args.new_tokens, arrivals, max_model_len, args.max_batch_tokens, b
                )
        elif system == "server":
            model.save_pretrained(model_dir, safe_serialization=True)
            procs, url = start_server(model_dir, args, max_model_len, work)
            try:
                warm_arrivals = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
                systems.server(url, texts, 4, warm_arrivals, silent)
                with bar(system, args.requests * args.new_tokens) as b:
                    runs[system] = systems.server(url, texts, args.new_tokens, arrivals, b)
            finally:
                redis_server, worker, api = procs
                api.stop()
                worker.stop()
                redis_server.stop()

    results = [summarize(runs[s]) for s in wanted if s in runs]
    by_name = {r["system"]: r for r in results}
    prefill = prefill_time(model, prompts[0])
    step = by_name.get("engine", {}).get("full_batch_step_s_p50")
    report = {
        "shape": args.shape,
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "concurrency": args.concurrency,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "requests": args.requests,
        "stagger_ms": args.stagger_ms,
        "max_batch_tokens": args.max_batch_tokens,
        "results": results,
        "ratios": {
            "engine / hf_static": ratio(by_name.get("engine"), by_name.get("hf_static")),
            "engine / hf_generate_batch": ratio(by_name.get("engine"), by_name.get("hf_generate_batch")),
            "engine / hf_one_at_a_time": ratio(by_name.get("engine"), by_name.get("hf_one_at_a_time")),
            "server / engine": ratio(by_name.get("server"), by_name.get("engine")),
        },
        "ttft_bound": {
            "prefill_s": round(prefill, 4),
            "decode_step_s": step,
            "prefill_plus_two_steps_s": round(prefill + 2 * step, 4) if step else None,
        },
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    chart = out.with_suffix(".png")
    title = (
        f"{args.shape}, {args.device} {args.dtype}: {args.concurrency} concurrent, "
        f"{args.prompt_len}-token prompts, {args.new_tokens} new tokens"
    )
    write_chart(results, title, chart)
    print_table(report)
    print(f"\nwrote {out} and {chart}")
    return 0


def print_table(report: dict[str, Any]) -> None:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    print(
        f"\n{'system':<20}{'reqs':>6}{'tok/s':>10}{'ttft p50':>10}{'ttft p99':>10}"
        f"{'itl p50':>9}{'itl p99':>9}  (ms)"
    )
    for r in report["results"]:
        print(
            f"{r['system']:<20}{r['requests']:>6}{r['tokens_per_s']:>10.1f}{ms(r['ttft_p50_s']):>10}"
            f"{ms(r['ttft_p99_s']):>10}{ms(r['itl_p50_s']):>9}{ms(r['itl_p99_s']):>9}"
        )
    for name, value in report["ratios"].items():
        if value is not None:
            print(f"{name:<28}{value:>6.2f} x")
    bound = report["ttft_bound"]
    if bound["prefill_plus_two_steps_s"] is not None:
        bound_s = bound["prefill_plus_two_steps_s"]
        print(f"ttft bound (one prompt's prefill + two full decode steps): {bound_s:.3f} s")


if __name__ == "__main__":
    raise SystemExit(main())
