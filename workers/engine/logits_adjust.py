"""What changes one sequence's logits before sampling: repetition, frequency and presence penalties,
logit bias and a constraint's mask. Each works on one row [vocab] and returns a new row.

The sampler calls these only for the rows that ask for them, so a batch without them pays nothing.
"""

from __future__ import annotations

import torch

from workers.engine.sequence import Sequence


def apply_repetition_penalty(logits: torch.Tensor, token_ids: list[int], penalty: float) -> torch.Tensor:
    """Make tokens already seen (prompt and output) less likely: positive logits divided, negative times."""
    if not token_ids:
        return logits
    ids = torch.tensor(sorted(set(token_ids)), device=logits.device)
    seen = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


def apply_output_penalties(
    logits: torch.Tensor, output_ids: list[int], frequency: float, presence: float
) -> torch.Tensor:
    """OpenAI's penalties, over the output's tokens only (as vLLM): logit - frequency * count
    - presence * (count > 0)."""
    if not output_ids:
        return logits
    vocab = logits.shape[-1]
    ids = torch.tensor(output_ids, device=logits.device)
    counts = torch.bincount(ids[ids < vocab], minlength=vocab).to(logits.dtype)
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def apply_logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """Add each token's bias to its logit (ids past the vocabulary are left out)."""
    vocab = logits.shape[-1]
    pairs = [(t, b) for t, b in bias.items() if t < vocab]
    if not pairs:
        return logits
    ids = torch.tensor([t for t, _ in pairs], device=logits.device)
    values = torch.tensor([b for _, b in pairs], device=logits.device, dtype=logits.dtype)
    return logits.index_add(0, ids, values)


def adjust_row(logits: torch.Tensor, seq: Sequence) -> torch.Tensor:
    """One sequence's logits [vocab] after everything its options ask for, in vLLM's order: penalties,
    then bias, then the constraint's mask (so no bias can bring back a token the rule forbids)."""
    opts = seq.options
    if opts.repetition_penalty != 1.0:  # all_ids builds a list: only for the sequences that ask
        logits = apply_repetition_penalty(logits, seq.all_ids, opts.repetition_penalty)
    if opts.frequency_penalty != 0.0 or opts.presence_penalty != 0.0:
        logits = apply_output_penalties(logits, seq.output_ids, opts.frequency_penalty, opts.presence_penalty)
    if opts.logit_bias:
        logits = apply_logit_bias(logits, opts.logit_bias)
    if opts.constraint is not None:
        allowed = opts.constraint.allowed(seq.output_ids).to(logits.device)
        logits = logits.masked_fill(~allowed[: logits.shape[-1]], float("-inf"))
    return logits
