"""Runs a transformers causal LM over the slot KV cache: one packed forward pass per step.

Any decoder whose attention goes through transformers' attention interface works (Llama,
Mistral, Qwen, ...). The runner learns the cache's shape from the model's config.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.engine.attention import PrefillChunk, StepBatch, register
from workers.engine.kv_cache import KVCache
from workers.engine.scheduler import Schedule

# A 4-D attention mask is passed through untouched, so transformers builds none for the packed
# row; slot_attention ignores it and masks from the StepBatch instead.
_NO_MASK = torch.zeros(1, 1, 0, 0, dtype=torch.bool)


def cache_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a decoder's config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class ModelRunner:
    def __init__(self, model: Any, max_batch: int, max_model_len: int) -> None:
        self.model = model
        self.device: torch.device = model.device
        self.max_model_len = max_model_len
        model.set_attn_implementation(register())
        layers, kv_heads, head_dim = cache_shape(model.config)
        self.kv = KVCache(layers, max_batch, kv_heads, max_model_len, head_dim, self.device, model.dtype)
        self._no_mask = _NO_MASK.to(self.device)

    @torch.inference_mode()
    def run(self, schedule: Schedule) -> torch.Tensor:
        """One forward pass over every scheduled token; logits [len(schedule.sampled), vocab] in fp32.

        Writes the tokens' keys and values into the cache; the scheduler's postprocess counts them.
        """
        token_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        keep: list[int] = []  # rows whose logits are sampled
        for seq in schedule.decode:
            assert seq.slot is not None
            token_ids.append(seq.last_token)
            positions.append(seq.num_cached)
            slots.append(seq.slot)
            keep.append(len(token_ids) - 1)
        chunks = []
        for seq, n in schedule.prefill:
            assert seq.slot is not None
            start = seq.num_cached
            token_ids.extend(seq.all_ids[start : start + n])
            positions.extend(range(start, start + n))
            slots.extend([seq.slot] * n)
            chunks.append(PrefillChunk(seq.slot, start, n, self._chunk_mask(start, n)))
            if start + n == seq.num_tokens:
                keep.append(len(token_ids) - 1)
        step = self._step_batch(schedule, slots, positions, chunks)
        out = self.model(
            input_ids=torch.tensor([token_ids], dtype=torch.long, device=self.device),
            position_ids=step.token_positions[None],
            attention_mask=self._no_mask,
            use_cache=False,
            logits_to_keep=torch.tensor(keep, dtype=torch.long, device=self.device),
            step_batch=step,
        )
        return out.logits[0].float()

    def _chunk_mask(self, start: int, n: int) -> torch.Tensor | None:
        """A chunk after cached tokens sees all of them plus its own causal triangle."""
        if start == 0:
            return None
        rows = torch.arange(n, device=self.device)[:, None]
        cols = torch.arange(start + n, device=self.device)[None, :]
        return cols <= rows + start

    def _step_batch(
        self, schedule: Schedule, slots: list[int], positions: list[int], chunks: list[PrefillChunk]
    ) -> StepBatch:
        decode = schedule.decode
        lengths = [s.num_cached + 1 for s in decode]
        decode_len = max(lengths, default=0)
        decode_slots: slice | torch.Tensor = slice(0, 0)
        if decode:
            first, last = decode[0].slot, decode[-1].slot
            assert first is not None and last is not None
            if last - first + 1 == len(decode):  # sorted by slot, no holes: read the range in place
                decode_slots = slice(first, last + 1)
            else:
                decode_slots = torch.tensor([s.slot for s in decode], device=self.device)
        mask = None
        if decode and min(lengths) != decode_len:
            cols = torch.arange(decode_len, device=self.device)
            mask = (cols[None, :] < torch.tensor(lengths, device=self.device)[:, None])[:, None, None, :]
        return StepBatch(
            kv=self.kv,
            token_slots=torch.tensor(slots, device=self.device),
            token_positions=torch.tensor(positions, device=self.device),
            num_decode=len(decode),
            decode_slots=decode_slots,
            decode_len=decode_len,
            decode_mask=mask,
            prefills=chunks,
        )
