"""Decode attention over a paged KV pool, two ways, on this machine: what workers/engine/attention.py does
(gather each sequence's blocks with one index_select, then SDPA on the padded batch) against
FlexAttention reading the pool in place (a block mask that lets each query see only its own sequence's
rows, compiled with torch.compile, as FlexAttention needs to be fast).

One decode step of --batch sequences with context lengths drawn from --min-len..--max-len, heads and
head size of the `small` shape by default; times are medians of --repeats calls of one layer, plus, for
FlexAttention, building the step's block mask (once per step, shared by every layer).

    .venv/bin/python scripts/bench_attention.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

BLOCK = 16


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--min-len", type=int, default=64)
    p.add_argument("--max-len", type=int, default=1024)
    p.add_argument("--heads", type=int, default=9)
    p.add_argument("--kv-heads", type=int, default=3)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm (and compile)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@torch.inference_mode()
def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    lengths = [rng.randint(args.min_len, args.max_len) for _ in range(args.batch)]
    blocks_per_seq = [-(-n // BLOCK) for n in lengths]
    num_blocks = sum(blocks_per_seq) + 8
    order = list(range(num_blocks))
    rng.shuffle(order)  # blocks scattered through the pool, as after a while of serving
    tables, at = [], 0
    for n in blocks_per_seq:
        tables.append(order[at : at + n])
        at += n
    pool_rows = num_blocks * BLOCK
    k_pool = torch.randn(pool_rows, args.kv_heads, args.head_dim)
    v_pool = torch.randn(pool_rows, args.kv_heads, args.head_dim)
    query = torch.randn(args.batch, args.heads, args.head_dim)
    scale = args.head_dim**-0.5

    # The engine's way: pool rows per sequence, padded to the longest, one gather, SDPA with a mask.
    longest = max(lengths)
    context = torch.zeros(args.batch, longest, dtype=torch.long)
    mask = torch.zeros(args.batch, 1, 1, longest, dtype=torch.bool)
    for i, (n, table) in enumerate(zip(lengths, tables, strict=True)):
        rows = torch.tensor([b * BLOCK + j for b in table for j in range(BLOCK)][:n])
        context[i, :n] = rows
        mask[i, 0, 0, :n] = True
    group = args.heads // args.kv_heads

    def gather_sdpa() -> torch.Tensor:
        flat = context.reshape(-1)
        keys = k_pool.index_select(0, flat).view(args.batch, longest, args.kv_heads, -1).transpose(1, 2)
        values = v_pool.index_select(0, flat).view(args.batch, longest, args.kv_heads, -1).transpose(1, 2)
        q = query.view(args.batch, args.kv_heads, group, -1)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale)

    # FlexAttention's way: queries [1, H, B, D] against the whole pool [1, KVH, rows, D]; row r belongs to
    # sequence owner[r] at position pos[r], and query b sees exactly its own sequence's valid rows.
    owner = torch.full((pool_rows,), -1, dtype=torch.long)
    for i, (n, table) in enumerate(zip(lengths, tables, strict=True)):
        for k, b in enumerate(table):
            valid = min(BLOCK, n - k * BLOCK)
            owner[b * BLOCK : b * BLOCK + valid] = i

    def own_rows(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return owner[kv_idx] == q_idx

    def build_mask() -> Any:
        return create_block_mask(
            own_rows, None, None, args.batch, pool_rows, device="cpu", BLOCK_SIZE=(BLOCK, BLOCK)
        )

    block_mask = build_mask()
    compiled = torch.compile(flex_attention)
    q_flex = query.transpose(0, 1)[None]  # [1, H, B, D]
    k_flex = k_pool.permute(1, 0, 2)[None].contiguous()
    v_flex = v_pool.permute(1, 0, 2)[None].contiguous()

    def flex() -> torch.Tensor:
        return compiled(q_flex, k_flex, v_flex, block_mask=block_mask, scale=scale, enable_gqa=True)

    expected = gather_sdpa().reshape(args.batch, args.heads, -1)
    got = flex()[0].transpose(0, 1)
    error = (expected - got).abs().max().item()
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "context_lengths": [min(lengths), max(lengths), round(statistics.mean(lengths))],
        "pool_rows": pool_rows,
        "max_abs_difference": error,
        "gather_sdpa_ms_per_layer": round(1000 * median_s(gather_sdpa, args.repeats), 3),
        "flex_ms_per_layer": round(1000 * median_s(flex, args.repeats), 3),
        "flex_block_mask_ms_per_step": round(1000 * median_s(build_mask, max(3, args.repeats // 4)), 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
