"""The sampler alone on this machine: one batch of logits (--batch rows over --vocab tokens, `small`'s
vocabulary by default) through workers/engine/sampler.py's Sampler, per setting a request can ask for,
next to the forward pass it follows (a full-batch decode step of the engine on the `small` shape, with
--steps). Times are medians of --repeats calls.

"peaked" logits have a nucleus of tens of tokens, as a trained model's usually has; "flat" ones spread
the mass over most of the vocabulary, as the random-weight models do (top-p then ranks whole rows).

    .venv/bin/python scripts/bench_sampler.py
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from workers.builtin_model import random_model
from workers.engine import LLMEngine, SamplingOptions
from workers.engine.sampler import Sampler
from workers.engine.sequence import Sequence

SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": dict(temperature=0.0),
    "temperature 1": dict(temperature=1.0),
    "seeded": dict(temperature=1.0, seed=7),
    "top_k 50": dict(temperature=1.0, top_k=50),
    "top_p 0.95, peaked": dict(temperature=1.0, top_p=0.95),
    "top_p 0.95, flat": dict(temperature=1.0, top_p=0.95),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--vocab", type=int, default=49152)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="decode steps timed for the forward pass (0: skip)")
    p.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    return p.parse_args()


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(1000 * statistics.median(samples), 2)


@torch.inference_mode()
def decode_step_ms(batch: int, steps: int) -> float:
    """A full-batch greedy decode step of the engine on `small`, prefill excluded."""
    engine = LLMEngine(random_model("small"), batch, 2048, set(), max_batch_tokens=512, num_blocks=batch * 16)
    for i in range(batch):
        opts = SamplingOptions(max_new_tokens=10_000, temperature=0.0, ignore_eos=True)
        engine.add_request(str(i), list(range(3, 35)), opts)
    while any(seq.num_cached < 32 for seq in engine.seqs.values()):
        engine.step()
    return median_ms(engine.step, steps)


@torch.inference_mode()
def main() -> int:
    args = parse_args()
    gen = torch.Generator().manual_seed(0)
    logits = {
        "peaked": torch.randn(args.batch, args.vocab, generator=gen) * 8,
        "flat": torch.randn(args.batch, args.vocab, generator=gen) * 0.5,
    }
    sampler = Sampler(torch.device("cpu"), set())
    figures: dict[str, float] = {}
    for name, fields in SETTINGS.items():
        seqs = [Sequence(str(i), [1], SamplingOptions(**fields)) for i in range(args.batch)]
        rows = logits["flat" if name.endswith("flat") else "peaked"]
        figures[name] = median_ms(functools.partial(sampler.sample, rows, seqs), args.repeats)
    if args.steps:
        figures["decode step (forward pass and greedy sampling)"] = decode_step_ms(args.batch, args.steps)
    print(f"{args.batch} rows x {args.vocab} tokens, torch threads {torch.get_num_threads()}; median ms:")
    for name, ms in figures.items():
        print(f"  {name:<48} {ms:8.2f}")
    if args.out:
        args.out.write_text(
            json.dumps({"batch": args.batch, "vocab": args.vocab, "ms": figures}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
