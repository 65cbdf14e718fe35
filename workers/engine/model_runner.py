"""Runs a transformers causal LM over the slot KV cache: prefill one sequence, decode a batch.

Any decoder that accepts a DynamicCache, attention_mask and position_ids works; the
runner learns the cache's shape by running one probe token at start-up.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from workers.engine.kv_cache import KVCache
from workers.engine.sequence import Sequence


class ModelRunner:
    def __init__(self, model: Any, max_batch: int, max_model_len: int) -> None:
        self.model = model
        self.device: torch.device = model.device
        self.max_model_len = max_model_len
        probe = self._forward(torch.zeros(1, 1, dtype=torch.long, device=self.device), DynamicCache())[1]
        k0 = probe.layers[0].keys  # [1, num_kv_heads, 1, head_dim]
        self.kv = KVCache(
            len(probe.layers), max_batch, k0.shape[1], max_model_len, k0.shape[3], self.device, k0.dtype
        )

    def _forward(
        self, input_ids: torch.Tensor, cache: DynamicCache, **kwargs: Any
    ) -> tuple[torch.Tensor, Any]:
        """Logits of the last position only, [batch, vocab] in fp32; `cache` grows in place."""
        out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1, **kwargs)
        return out.logits[:, -1, :].float(), cache

    @torch.inference_mode()
    def prefill(self, seq: Sequence) -> torch.Tensor:
        """Run a sequence's tokens through the model into its slot; logits of the last position, [vocab]."""
        assert seq.slot is not None
        ids = torch.tensor([seq.all_ids], dtype=torch.long, device=self.device)
        logits, cache = self._forward(ids, DynamicCache())
        for layer_idx, layer in enumerate(cache.layers):
            self.kv.write_prefix(layer_idx, seq.slot, layer.keys[0], layer.values[0])
        seq.num_cached = ids.shape[1]
        return logits[0]

    @torch.inference_mode()
    def decode(self, seqs: list[Sequence]) -> torch.Tensor:
        """One token for each sequence, all in one forward pass; logits [batch, vocab].

        Each sequence's cache is gathered to a common length L; positions past its own
        length are masked out. The new token sits at column L with its true position id,
        and its keys and values are copied back to the sequence's own next position.
        """
        lengths = [s.num_cached for s in seqs]
        length = max(lengths)
        slots = torch.tensor([s.slot for s in seqs], dtype=torch.long, device=self.device)
        positions = torch.tensor(lengths, dtype=torch.long, device=self.device)
        cache = DynamicCache()
        for layer_idx in range(self.kv.num_layers):
            cache.update(*self.kv.gather(layer_idx, slots, length), layer_idx)
        columns = torch.arange(length + 1, device=self.device)
        mask = (columns[None, :] < positions[:, None]) | (columns[None, :] == length)  # [batch, L+1]
        input_ids = torch.tensor([[s.last_token] for s in seqs], dtype=torch.long, device=self.device)
        logits, cache = self._forward(
            input_ids,
            cache,
            attention_mask=mask.long(),
            position_ids=positions[:, None],
        )
        for layer_idx, layer in enumerate(cache.layers):
            self.kv.write_tokens(
                layer_idx, slots, positions, layer.keys[:, :, length], layer.values[:, :, length]
            )
        for s in seqs:
            s.num_cached += 1
        return logits
