"""How many KV-cache blocks a worker allocates: KV_CACHE_MEMORY, as bytes, a fraction of free memory, or
auto (CUDA: 85% of what the weights leave free; CPU: a quarter of available memory, up to 4 GiB, and no
more than max_batch full-context requests can use: a small model takes no gigabytes it never needs)."""

from __future__ import annotations

import re
from typing import Any

import torch

from workers.engine import cache_shape
from workers.engine.kv_cache import bytes_per_block

GIB = 1024**3
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": GIB}
CPU_AUTO_FRACTION, CPU_AUTO_CAP = 0.25, 4 * GIB
CUDA_AUTO_FRACTION = 0.85


def budget_bytes(setting: str, free_bytes: int, device: torch.device) -> int:
    """The KV cache's share of memory for a KV_CACHE_MEMORY value; ValueError naming what is wrong."""
    text = setting.strip().lower()
    if text == "auto":
        if device.type == "cuda":
            return int(CUDA_AUTO_FRACTION * free_bytes)
        return int(min(CPU_AUTO_FRACTION * free_bytes, CPU_AUTO_CAP))
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"KV_CACHE_MEMORY={setting!r}: give bytes (4GiB, 500MB), a fraction (0.5) or auto")
    number = float(match.group(1))
    if not match.group(2) and number <= 1:
        return int(number * free_bytes)  # a fraction of what is free
    return int(number * _UNITS[match.group(2)])


def num_blocks(setting: str, config: Any, dtype: torch.dtype, free_bytes: int, device: torch.device,
               block_size: int, most_tokens: int) -> int:  # fmt: skip
    """Blocks of block_size tokens that fit the budget (at least one); auto on CPU stops at most_tokens."""
    layers, kv_heads, head_dim = cache_shape(config)
    per_block = bytes_per_block(
        layers, block_size, kv_heads, head_dim, torch.tensor([], dtype=dtype).element_size()
    )
    blocks = budget_bytes(setting, free_bytes, device) // per_block
    if setting.strip().lower() == "auto" and device.type != "cuda":
        blocks = min(blocks, -(-most_tokens // block_size))
    return max(1, blocks)
