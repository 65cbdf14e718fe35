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
import importlib.util
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
from scripts import bench_baseline, bench_http, bench_report
from scripts import bench_systems as systems
from shared.settings import PROJECT_ROOT
from workers.builtin_model import SHAPES, build_tokenizer, random_model
from workers.engine.engine import DEFAULT_BLOCK_SIZE
from workers.engine.kv_cache import bytes_per_block
from workers.engine.model_runner import cache_shape
from workers.malloc_tuning import keep_freed_memory
from workers.model_loader import pick_device, pick_dtype

ALL_SYSTEMS = [
    "hf_one_at_a_time", "hf_static", "hf_generate_batch", "slot_engine", "engine", "server",
    "transformers_serve", "engine_no_prefix_cache",
]  # fmt: skip


WORKLOAD_SYSTEMS = {
    "standard": [s for s in ALL_SYSTEMS if s != "engine_no_prefix_cache"],
    "shared-prefix": ["engine", "engine_no_prefix_cache", "server", "transformers_serve"],
    "sampled": ["slot_engine", "engine", "server", "transformers_serve"],
    # The slot engine's side of a long context under one KV budget is scripts/bench_capacity.py's.
    "long-context": ["engine", "server", "transformers_serve"],
}
SAMPLED_TEMPERATURE = 1.0  # the sampled workload's; the others are greedy


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument(
        "--workload",
        choices=sorted(WORKLOAD_SYSTEMS),
        default="standard",
        help="shared-prefix: every prompt starts with the same --system-prompt-len tokens; "
        f"sampled: the standard prompts at temperature {SAMPLED_TEMPERATURE} instead of greedy; "
        "long-context: a context of --long-context tokens, prompts of --long-prompts lengths in turn, "
        "and a KV budget of --kv-tokens for our engine and server",
    )
    p.add_argument("--system-prompt-len", type=int, default=512)
    p.add_argument(
        "--prompt-len", type=int, default=32, help="tokens per prompt (shared-prefix: per question)"
    )
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--long-context", type=int, default=8192, help="long-context: MAX_MODEL_LEN")
    p.add_argument(
        "--long-prompts", default="32,32,32,32,32,256,1024,4096", help="long-context: prompt lengths, in turn"
    )
    p.add_argument(
        "--kv-tokens", type=int, default=32768, help="long-context: tokens of KV cache (4 x 8,192 by default)"
    )
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
    p.add_argument("--systems", default="", help="comma-separated (default: the workload's own list)")
    p.add_argument("--device", default="", help="default: cuda when present, else cpu")
    p.add_argument("--dtype", default="", help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON path (the chart goes next to it)")
    return p.parse_args()


def make_texts(n: int, prompt_len: int, seed: int, system_len: int = 0) -> list[str]:
    """Seeded ASCII prompts: with the byte-level tokenizer, BOS plus prompt_len - 1 tokens each; with
    system_len, each begins with the same system_len - 1 tokens and then has prompt_len of its own."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + "     "
    system = "".join(rng.choice(alphabet) for _ in range(system_len))
    own = prompt_len if system_len else prompt_len - 1
    return [system[:-1] + "".join(rng.choice(alphabet) for _ in range(own)) if system_len
            else "".join(rng.choice(alphabet) for _ in range(own)) for _ in range(n)]  # fmt: skip


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


def auto_stagger(
    model: Any, prompts: list[list[int]], args: argparse.Namespace, max_model_len: int, kv_blocks: int | None
) -> float:
    """Seconds between the clients' first requests: half a request's lifetime (new_tokens full-batch
    decode steps, timed in a warm-up run) spread over the clients."""
    warm = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
    run = systems.engine_in_process(
        model, prompts, 8, warm, max_model_len, args.max_batch_tokens, tqdm(disable=True),
        num_blocks=kv_blocks,
    )  # fmt: skip
    step_s = float(run.extra.get("full_batch_step_s_p50") or 0.0)
    return step_s * args.new_tokens / 2 / args.concurrency


def start_server(
    model_dir: Path, args: argparse.Namespace, max_model_len: int, log_dir: Path, kv_bytes: int | None = None
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
        **({"KV_CACHE_MEMORY": str(kv_bytes)} if kv_bytes else {}),
    }
    worker = start_worker(env, log_dir)
    api, url = start_api(env, log_dir)
    return (redis_server, worker, api), url


def ttft_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """TTFT p50 of the requests after the first, a over b (the prefix cache's target: at most 0.3)."""
    if not a or not b or not a["ttft_p50_after_first_s"] or not b["ttft_p50_after_first_s"]:
        return None
    return round(a["ttft_p50_after_first_s"] / b["ttft_p50_after_first_s"], 3)


def main() -> int:
    args = parse_args()
    keep_freed_memory()  # as the worker does: the comparison runs under the same allocator settings
    args.requests = args.requests or 6 * args.concurrency
    wanted = [s.strip() for s in (args.systems or ",".join(WORKLOAD_SYSTEMS[args.workload])).split(",")]
    wanted = [s for s in wanted if s]
    if "transformers_serve" in wanted and importlib.util.find_spec("fastapi") is None:
        print("skipping transformers_serve: it needs .venv/bin/pip install 'transformers[serving]'")
        wanted.remove("transformers_serve")
    unknown = set(wanted) - set(ALL_SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems: {sorted(unknown)}; choose from {ALL_SYSTEMS}")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    args.device, args.dtype = str(device), str(dtype).removeprefix("torch.")
    suffix = "" if args.workload == "standard" else f"-{args.workload}"
    out = args.out or PROJECT_ROOT / "bench-results" / f"{args.shape}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    shared = args.system_prompt_len if args.workload == "shared-prefix" else 0
    temperature = SAMPLED_TEMPERATURE if args.workload == "sampled" else 0.0
    prompt_tokens = shared + args.prompt_len
    max_model_len = prompt_tokens + args.new_tokens + 8
    lengths = [prompt_tokens] * max(args.concurrency, args.requests)
    kv_blocks = None  # the engine's default: what `concurrency` slots of max_model_len would hold
    if args.workload == "long-context":
        cycle = [int(x) for x in args.long_prompts.split(",") if x]
        lengths = [cycle[i % len(cycle)] for i in range(len(lengths))]
        max_model_len = args.long_context
        kv_blocks = -(-args.kv_tokens // DEFAULT_BLOCK_SIZE)

    print(f"building the random-weight '{args.shape}' model on {device} ({dtype})", flush=True)
    model = random_model(
        args.shape, seed=args.seed, initializer_range=0.02, device=device, dtype=dtype
    ).eval()
    # The served context is the model's own unless MAX_MODEL_LEN is shorter: every system gets this one.
    model.config.max_position_embeddings = max(model.config.max_position_embeddings, max_model_len)
    work = Path(tempfile.mkdtemp(prefix="torchweave-bench-"))
    model_dir = work / "model"
    build_tokenizer(model_dir, vocab_size=model.config.vocab_size)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if args.workload == "long-context":
        texts = [make_texts(1, n, args.seed + i)[0] for i, n in enumerate(lengths)]
    else:
        texts = make_texts(len(lengths), args.prompt_len, args.seed, shared)
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    assert [len(p) for p in prompts] == lengths, "a prompt did not tokenize to its length"
    if args.stagger_ms < 0:
        args.stagger_ms = round(1000 * auto_stagger(model, prompts, args, max_model_len, kv_blocks), 1)
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
        elif system in ("engine", "engine_no_prefix_cache"):
            caching = system == "engine"
            warm_arrivals = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
            systems.engine_in_process(
                model, prompts, 4, warm_arrivals, max_model_len, args.max_batch_tokens, silent, caching,
                num_blocks=kv_blocks,
            )  # fmt: skip
            with bar(system, args.requests * args.new_tokens) as b:
                runs[system] = systems.engine_in_process(
                    model, prompts, args.new_tokens, arrivals, max_model_len, args.max_batch_tokens, b,
                    caching, system, num_blocks=kv_blocks, temperature=temperature,
                )  # fmt: skip
        elif system == "server":
            model.save_pretrained(model_dir, safe_serialization=True)
            kv_bytes = None
            if kv_blocks:  # the engine's budget, in the bytes KV_CACHE_MEMORY takes
                layers, kv_heads, head_dim = cache_shape(model.config)
                per_block = bytes_per_block(
                    layers, DEFAULT_BLOCK_SIZE, kv_heads, head_dim, model.dtype.itemsize
                )
                kv_bytes = kv_blocks * per_block
            procs, url = start_server(model_dir, args, max_model_len, work, kv_bytes)
            try:
                warm_arrivals = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
                bench_http.server(url, texts, 4, warm_arrivals, silent)
                with bar(system, args.requests * args.new_tokens) as b:
                    runs[system] = bench_http.server(url, texts, args.new_tokens, arrivals, b, temperature)
            finally:
                redis_server, worker, api = procs
                api.stop()
                worker.stop()
                redis_server.stop()
        elif system == "slot_engine":
            model.save_pretrained(model_dir, safe_serialization=True)
            job = dict(
                model_dir=str(model_dir), dtype=args.dtype, device=args.device, prompts=prompts,
                new_tokens=args.new_tokens, concurrency=args.concurrency, requests=args.requests,
                stagger_s=args.stagger_ms / 1000, max_model_len=max_model_len,
                max_batch_tokens=args.max_batch_tokens, temperature=temperature,
            )  # fmt: skip
            print(
                f"{system:>18}: commit {bench_baseline.SLOT_ENGINE_COMMIT[:10]} in a subprocess", flush=True
            )
            runs[system] = bench_baseline.slot_engine(job, work)
        elif system == "transformers_serve":
            model.save_pretrained(model_dir, safe_serialization=True)
            peer_dir = bench_http.peer_model_dir(model_dir, work / "peer-model")
            proc, url = bench_http.start_peer(peer_dir, args.device, args.dtype, work, args.max_batch_tokens)
            try:
                warm_arrivals = systems.Arrivals(args.concurrency, args.concurrency, 0.0)
                bench_http.peer(url, str(peer_dir), texts, 4, warm_arrivals, silent)
                with bar(system, args.requests * args.new_tokens) as b:
                    runs[system] = bench_http.peer(
                        url, str(peer_dir), texts, args.new_tokens, arrivals, b, temperature
                    )
            finally:
                proc.stop()

    results = [bench_report.summarize(runs[s]) for s in wanted if s in runs]
    by_name = {r["system"]: r for r in results}
    prefill = prefill_time(model, prompts[0])
    step = by_name.get("engine", {}).get("full_batch_step_s_p50")
    report = {
        "shape": args.shape,
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "workload": args.workload,
        "temperature": temperature,
        "max_model_len": max_model_len,
        "prompt_lengths": sorted(set(lengths)),
        "kv_cache_tokens": kv_blocks * DEFAULT_BLOCK_SIZE if kv_blocks else None,
        "system_prompt_len": shared,
        "concurrency": args.concurrency,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "requests": args.requests,
        "stagger_ms": args.stagger_ms,
        "max_batch_tokens": args.max_batch_tokens,
        "results": results,
        "ratios": {
            "engine / slot_engine": bench_report.ratio(by_name.get("engine"), by_name.get("slot_engine")),
            "engine / hf_static": bench_report.ratio(by_name.get("engine"), by_name.get("hf_static")),
            "engine / hf_generate_batch": bench_report.ratio(
                by_name.get("engine"), by_name.get("hf_generate_batch")
            ),
            "engine / hf_one_at_a_time": bench_report.ratio(
                by_name.get("engine"), by_name.get("hf_one_at_a_time")
            ),
            "server / engine": bench_report.ratio(by_name.get("server"), by_name.get("engine")),
            "engine / engine_no_prefix_cache": bench_report.ratio(
                by_name.get("engine"), by_name.get("engine_no_prefix_cache")
            ),
            "server / transformers_serve": bench_report.ratio(
                by_name.get("server"), by_name.get("transformers_serve")
            ),
        },
        "ttft_after_first": {
            "engine / engine_no_prefix_cache": ttft_ratio(
                by_name.get("engine"), by_name.get("engine_no_prefix_cache")
            ),
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
    bench_report.write_chart(results, title, chart)
    bench_report.print_table(report)
    print(f"\nwrote {out} and {chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
