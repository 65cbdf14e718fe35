"""Attention over the slot KV cache, plugged into transformers' attention interface.

The engine runs one packed row per step: the decode tokens first (one per running
sequence), then the prefill chunks. transformers computes the projections, RoPE and MLPs
for every token at once; only attention needs to know which tokens belong together, and
that is what `StepBatch` tells this function. Every new key and value is written straight
into its sequence's slot, and attention reads the slots in place, so nobody's cache is
copied or re-laid out when a sequence joins or leaves.

Called without a StepBatch (model.generate, the no-batching baseline), it is plain SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

from workers.engine.kv_cache import KVCache

ATTN_IMPLEMENTATION = "torchweave_slots"


@dataclass
class PrefillChunk:
    slot: int
    start: int  # position of the chunk's first token in its sequence
    length: int
    mask: torch.Tensor | None  # [length, start + length] bool when start > 0, else causal


@dataclass
class StepBatch:
    """Where each token of the packed row lives in the cache, and who attends to what."""

    kv: KVCache
    token_slots: torch.Tensor  # [T]: the slot each token's key and value go to
    token_positions: torch.Tensor  # [T]: the position inside that slot
    num_decode: int
    decode_slots: slice | torch.Tensor  # a slice when the slots are contiguous: read in place, no copy
    decode_len: int  # the longest decode context, the new token included
    decode_mask: torch.Tensor | None  # [num_decode, 1, 1, decode_len] bool; None when all lengths agree
    prefills: list[PrefillChunk]


def _decode_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """query [B, H, D] against keys/values [B, KVH, L, D]; returns [B, H, D].

    Grouped-query heads are folded into the query-length axis ([B, KVH, H/KVH, D]), so the
    key and value heads are never repeated in memory.
    """
    batch, heads, dim = query.shape
    kv_heads = keys.shape[1]
    q = query.view(batch, kv_heads, heads // kv_heads, dim)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale)
    return out.reshape(batch, heads, dim)


def slot_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    step_batch: StepBatch | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query [1, H, T, D], key/value [1, KVH, T, D] after RoPE;
    returns [1, T, H, D]."""
    if step_batch is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    step = step_batch
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    layer: int = module.layer_idx
    k_cache, v_cache = step.kv.keys[layer], step.kv.values[layer]
    k_cache[step.token_slots, :, step.token_positions] = key[0].transpose(0, 1)
    v_cache[step.token_slots, :, step.token_positions] = value[0].transpose(0, 1)

    q_tokens = query[0].transpose(0, 1)  # [T, H, D]
    outputs = []
    if step.num_decode:
        keys = k_cache[step.decode_slots, :, : step.decode_len]
        values = v_cache[step.decode_slots, :, : step.decode_len]
        outputs.append(_decode_attention(q_tokens[: step.num_decode], keys, values, step.decode_mask, scale))
    offset = step.num_decode
    for chunk in step.prefills:
        end = chunk.start + chunk.length
        q = query[:, :, offset : offset + chunk.length]
        out = F.scaled_dot_product_attention(
            q,
            k_cache[chunk.slot : chunk.slot + 1, :, :end],
            v_cache[chunk.slot : chunk.slot + 1, :, :end],
            attn_mask=chunk.mask,
            is_causal=chunk.mask is None,
            scale=scale,
            enable_gqa=True,
        )
        outputs.append(out[0].transpose(0, 1))
        offset += chunk.length
    return torch.cat(outputs)[None], None


def register() -> str:
    """Make the implementation known to transformers (idempotent); returns its name.

    The mask function is SDPA's, so model.generate on the same model still gets the padding
    masks it needs; the engine skips mask building by passing its own (empty) 4-D mask.
    """
    AttentionInterface.register(ATTN_IMPLEMENTATION, slot_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return ATTN_IMPLEMENTATION
