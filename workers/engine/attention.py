"""Attention over the paged KV cache, plugged into transformers' attention interface.

The engine runs one packed row per step: the decode tokens first (one per running sequence),
then the prefill chunks. transformers computes the projections, RoPE and MLPs for every token
at once; only attention needs to know which tokens belong together, and that is what
`StepBatch` tells this function. Every new key and value is written into its sequence's block
(a flat index into the layer's pool); attention then gathers each sequence's context from its
blocks and runs SDPA on it. Decodes are gathered in groups of similar context length (one
index_select per group and layer), so one long context does not pad every short one to its length.

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
class DecodeGroup:
    """Decodes whose contexts are about as long, gathered and attended together (padded to the longest)."""

    rows: torch.Tensor | None  # [G]: which decode tokens, in the packed row's order; None: all of them
    context: torch.Tensor  # [G, L]: pool rows of each one's context
    mask: torch.Tensor | None  # [G, 1, 1, L] bool; None when every context is L long


@dataclass
class StepBatch:
    """Where each token of the packed row goes in the cache, and what each query attends to."""

    kv: KVCache
    token_rows: torch.Tensor  # [T]: the pool row each token's key and value go to
    num_decode: int
    decode_groups: list[DecodeGroup]
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


def _gathered_decode(
    query: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, group: DecodeGroup, scale: float
) -> torch.Tensor:
    """One group's decodes: gather their contexts from the pool (one index_select each for keys and
    values), then attend; query [G, H, D], returns [G, H, D]."""
    batch, length = group.context.shape
    flat = group.context.reshape(-1)
    keys = k_pool.index_select(0, flat).view(batch, length, *k_pool.shape[1:]).transpose(1, 2)
    values = v_pool.index_select(0, flat).view(batch, length, *v_pool.shape[1:]).transpose(1, 2)
    return _decode_attention(query, keys, values, group.mask, scale)


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
        q_decode = q_tokens[: step.num_decode]
        if len(step.decode_groups) == 1 and step.decode_groups[0].rows is None:
            outputs.append(_gathered_decode(q_decode, k_pool, v_pool, step.decode_groups[0], scale))
        else:
            out = torch.empty_like(q_decode)
            for group in step.decode_groups:
                assert group.rows is not None
                q = q_decode.index_select(0, group.rows)
                out.index_copy_(0, group.rows, _gathered_decode(q, k_pool, v_pool, group, scale))
            outputs.append(out)
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
