"""The preallocated KV cache: one row (slot) per running sequence, sized to the model's context."""

from __future__ import annotations

import torch


class KVCache:
    """keys[layer] and values[layer] are [num_slots, num_kv_heads, max_len, head_dim].

    A sequence owns one slot from admission to finish; its token t lives at position t,
    so joining and leaving never moves anyone else's cache.
    """

    def __init__(
        self,
        num_layers: int,
        num_slots: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (num_slots, num_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.max_len = max_len

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)
