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

    def write_prefix(self, layer: int, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store positions 0..n-1 of one sequence; keys/values are [num_kv_heads, n, head_dim]."""
        n = keys.shape[1]
        self.keys[layer][slot, :, :n] = keys
        self.values[layer][slot, :, :n] = values

    def write_tokens(
        self,
        layer: int,
        slots: torch.Tensor,
        positions: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
    ) -> None:
        """Store one position per sequence; keys/values are [batch, num_kv_heads, head_dim]."""
        self.keys[layer][slots, :, positions] = keys
        self.values[layer][slots, :, positions] = values

    def gather(self, layer: int, slots: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions 0..length-1 of the given slots: [batch, num_kv_heads, length, head_dim] each."""
        return self.keys[layer][slots, :, :length], self.values[layer][slots, :, :length]
