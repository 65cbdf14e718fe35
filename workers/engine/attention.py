"""Attention over the paged KV cache, plugged into transformers' attention interface.

The engine runs one packed row per step: the decode tokens first (one per running sequence),
then the prefill chunks. transformers computes the projections, RoPE and MLPs for every token
at once; only attention needs to know which tokens belong together, and that is what
`StepBatch` tells this function. Every new key and value is written into its sequence's block
(a flat index into the layer's pool); attention then gathers each sequence's context from its
blocks (one index_select per layer for all decodes) and runs SDPA on it.

Gathering was measured against reading per-sequence slots in place (the slot cache this replaced):
on CPU the copy is small next to the step's matmuls (see the README's engine figures).

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

ATTN_IMPLEMENTATION = "torchweave_paged"


@dataclass
class PrefillChunk:
    start: int  # position of the chunk's first token in its sequence
    length: int
    context: torch.Tensor  # [start + length]: pool rows of the sequence's tokens 0 .. start + length - 1
    mask: torch.Tensor | None  # [length, start + length] bool when start > 0, else causal


@dataclass
class StepBatch:
    """Where each token of the packed row goes in the cache, and what each query attends to."""

    kv: KVCache
    token_rows: torch.Tensor  # [T]: the pool row each token's key and value go to
    num_decode: int
    decode_context: torch.Tensor | None  # [num_decode, L]: pool rows of each decode's context (padded)
    decode_mask: torch.Tensor | None  # [num_decode, 1, 1, L] bool; None when every context is L long
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


def paged_attention(
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
    k_pool, v_pool = step.kv.keys[layer], step.kv.values[layer]
    k_pool[step.token_rows] = key[0].transpose(0, 1)  # [T, KVH, D]
    v_pool[step.token_rows] = value[0].transpose(0, 1)

    q_tokens = query[0].transpose(0, 1)  # [T, H, D]
    outputs = []
    if step.num_decode:
        assert step.decode_context is not None
        batch, length = step.decode_context.shape
        flat = step.decode_context.reshape(-1)
        keys = k_pool.index_select(0, flat).view(batch, length, *k_pool.shape[1:]).transpose(1, 2)
        values = v_pool.index_select(0, flat).view(batch, length, *v_pool.shape[1:]).transpose(1, 2)
        outputs.append(_decode_attention(q_tokens[: step.num_decode], keys, values, step.decode_mask, scale))
    offset = step.num_decode
    for chunk in step.prefills:
        q = query[:, :, offset : offset + chunk.length]
        keys = k_pool.index_select(0, chunk.context).transpose(0, 1)[None]  # [1, KVH, start + length, D]
        values = v_pool.index_select(0, chunk.context).transpose(0, 1)[None]
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=chunk.mask, is_causal=chunk.mask is None, scale=scale, enable_gqa=True
        )
        outputs.append(out[0].transpose(0, 1))
        offset += chunk.length
    return torch.cat(outputs)[None], None


def register() -> str:
    """Make the implementation known to transformers (idempotent); returns its name.

    The mask function is SDPA's, so model.generate on the same model still gets the padding
    masks it needs; the engine skips mask building by passing its own (empty) 4-D mask.
    """
    AttentionInterface.register(ATTN_IMPLEMENTATION, paged_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return ATTN_IMPLEMENTATION
