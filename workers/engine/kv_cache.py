"""The KV cache: one preallocated pool per layer, split into fixed-size blocks (the block manager decides
who holds which). Token t of a sequence lives in block block_table[t // block_size], at row
t % block_size; a flat view of the pool addresses it as block * block_size + row."""

from __future__ import annotations

import torch


class KVCache:
    """keys[layer] and values[layer] are [num_blocks * block_size, num_kv_heads, head_dim]."""

    def __init__(
        self,
        num_layers: int,
        num_blocks: int,
        block_size: int,
        num_kv_heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (num_blocks * block_size, num_kv_heads, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.block_size = block_size
        self.num_blocks = num_blocks

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def bytes_per_block(
    num_layers: int, block_size: int, num_kv_heads: int, head_dim: int, dtype_bytes: int
) -> int:
    """Device memory one block takes in every layer, keys and values."""
    return 2 * num_layers * block_size * num_kv_heads * head_dim * dtype_bytes
