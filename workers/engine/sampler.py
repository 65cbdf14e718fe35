"""Turns logits into token ids, per sequence: greedy, temperature, top-k, top-p, seed."""

from __future__ import annotations

import torch

from workers.engine.sequence import Sequence

_SEED_MIX = 0x9E3779B97F4A7C15  # spreads (seed, position) pairs over the generator's seed space


def position_seed(seed: int, position: int) -> int:
    """The generator seed for one output position: the same whatever else shares the batch."""
    return (seed * _SEED_MIX + position) % (2**63 - 1)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) everything outside the top_k tokens and outside the top_p probability mass."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return logits


class Sampler:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._unseeded = torch.Generator(device=device)
        self._unseeded.seed()

    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        """One token id per row of logits [batch, vocab]; row i belongs to seqs[i]."""
        greedy = logits.argmax(dim=-1).tolist()
        tokens: list[int] = []
        for i, seq in enumerate(seqs):
            opts = seq.options
            if opts.temperature == 0.0:
                tokens.append(greedy[i])
                continue
            row = filter_logits(logits[i] / opts.temperature, opts.top_k, opts.top_p)
            probs = torch.softmax(row, dim=-1)
            gen = self._unseeded
            if opts.seed is not None:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(position_seed(opts.seed, len(seq.output_ids)))
            tokens.append(int(torch.multinomial(probs, 1, generator=gen).item()))
        return tokens
