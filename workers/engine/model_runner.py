"""Runs a transformers causal LM over the paged KV cache: one packed forward pass per step.

Any decoder whose attention goes through transformers' attention interface works (Llama,
Mistral, Qwen, ...). The runner learns the cache's shape from the model's config.
"""

from __future__ import annotations

from typing import Any

import torch

from workers.engine.attention import DecodeGroup, PrefillChunk, StepBatch, register
from workers.engine.kv_cache import KVCache
from workers.engine.scheduler import Schedule
from workers.engine.sequence import Sequence

# A 4-D attention mask is passed through untouched, so transformers builds none for the packed
# row; paged_attention ignores it and masks from the StepBatch instead.
_NO_MASK = torch.zeros(1, 1, 0, 0, dtype=torch.bool)
# Decodes gather their contexts in groups of lengths up to 256, 512, 1024, ... tokens.
GROUP_MIN_LEN = 256


def cache_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a decoder's config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class ModelRunner:
    def __init__(self, model: Any, num_blocks: int, block_size: int) -> None:
        self.model = model
        self.device: torch.device = model.device
        self.block_size = block_size
        model.set_attn_implementation(register())
        layers, kv_heads, head_dim = cache_shape(model.config)
        self.kv = KVCache(layers, num_blocks, block_size, kv_heads, head_dim, self.device, model.dtype)
        self._no_mask = _NO_MASK.to(self.device)
        self._offsets = torch.arange(block_size, device=self.device)

    @torch.inference_mode()
    def run(self, schedule: Schedule) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass over every scheduled token. Returns the logits of the rows that are sampled
        ([len(schedule.sampled), vocab], fp32) and, for sequences that asked for prompt logprobs, the
        logits of every position of their chunk ([chunk length, vocab], fp32).

        Writes the tokens' keys and values into the cache; the scheduler's postprocess counts them.
        """
        token_ids: list[int] = []
        positions: list[int] = []
        keep: list[int] = []  # rows whose logits are sampled
        for seq in schedule.decode:
            token_ids.append(seq.last_token)
            positions.append(seq.num_cached)
            keep.append(len(token_ids) - 1)
        chunks, chunk_rows = [], {}
        sampled_ids = {seq.seq_id for seq in schedule.sampled}
        for seq, n in schedule.prefill:
            start = seq.num_cached
            first = len(token_ids)
            token_ids.extend(seq.all_ids[start : start + n])
            positions.extend(range(start, start + n))
            chunks.append(PrefillChunk(start, n, self._rows(seq, start + n), self._chunk_mask(start, n)))
            if seq.options.prompt_logprobs is not None:
                chunk_rows[seq.seq_id] = (first, n)
            if seq.seq_id in sampled_ids:  # its last chunk, and it asks for a token (max_tokens 0 does not)
                keep.append(len(token_ids) - 1)
        step = self._step_batch(schedule, chunks)
        wanted = keep + [first + i for first, n in chunk_rows.values() for i in range(n)]
        out = self.model(
            input_ids=torch.tensor([token_ids], dtype=torch.long, device=self.device),
            position_ids=torch.tensor([positions], device=self.device),
            attention_mask=self._no_mask,
            use_cache=False,
            logits_to_keep=torch.tensor(wanted, dtype=torch.long, device=self.device),
            step_batch=step,
        )
        logits = out.logits[0].float()
        prompt_logits, at = {}, len(keep)
        for seq_id, (_, n) in chunk_rows.items():
            prompt_logits[seq_id] = logits[at : at + n]
            at += n
        return logits[: len(keep)], prompt_logits

    def _rows(self, seq: Sequence, length: int) -> torch.Tensor:
        """Pool rows of seq's tokens 0 .. length - 1, from its block table."""
        blocks = torch.tensor(seq.block_table[: -(-length // self.block_size)], device=self.device)
        return (blocks[:, None] * self.block_size + self._offsets).reshape(-1)[:length]

    def _chunk_mask(self, start: int, n: int) -> torch.Tensor | None:
        """A chunk after cached tokens sees all of them plus its own causal triangle."""
        if start == 0:
            return None
        rows = torch.arange(n, device=self.device)[:, None]
        cols = torch.arange(start + n, device=self.device)[None, :]
        return cols <= rows + start

    def _step_batch(self, schedule: Schedule, chunks: list[PrefillChunk]) -> StepBatch:
        decode = schedule.decode
        bs = self.block_size
        decode_rows = [s.block_table[s.num_cached // bs] * bs + s.num_cached % bs for s in decode]
        token_rows = torch.cat(
            [torch.tensor(decode_rows, dtype=torch.long, device=self.device)]
            + [chunk.context[chunk.start :] for chunk in chunks]
        )
        groups = self._decode_groups(decode)
        return StepBatch(
            kv=self.kv,
            token_rows=token_rows,
            num_decode=len(decode),
            decode_groups=groups,
            prefills=chunks,
        )

    def _decode_groups(self, decode: list[Sequence]) -> list[DecodeGroup]:
        """The decodes grouped by context length, in buckets that double from GROUP_MIN_LEN tokens: a
        gathered context is padded to its group's longest, so a few long contexts cost the short
        ones nothing. One group (the usual case) keeps the packed order and needs no reindexing."""
        if not decode:
            return []
        lengths = [seq.num_cached + 1 for seq in decode]
        buckets: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            buckets.setdefault(max(0, (n - 1) // GROUP_MIN_LEN).bit_length(), []).append(i)
        if len(buckets) == 1:
            return [self._decode_group(decode, lengths, None)]
        return [self._decode_group(decode, lengths, members) for members in buckets.values()]

    def _decode_group(
        self, decode: list[Sequence], lengths: list[int], members: list[int] | None
    ) -> DecodeGroup:
        picked = range(len(decode)) if members is None else members
        seqs, lens = [decode[i] for i in picked], [lengths[i] for i in picked]
        longest = max(lens)
        width = -(-longest // self.block_size)
        padded = [s.block_table[:width] + [0] * (width - len(s.block_table[:width])) for s in seqs]
        table = torch.tensor(padded, device=self.device)
        context = (table[:, :, None] * self.block_size + self._offsets).reshape(len(seqs), -1)[:, :longest]
        mask = None
        if min(lens) != longest:
            cols = torch.arange(longest, device=self.device)
            mask = (cols[None, :] < torch.tensor(lens, device=self.device)[:, None])[:, None, None, :]
        rows = None if members is None else torch.tensor(members, dtype=torch.long, device=self.device)
        return DecodeGroup(rows, context, mask)
