"""Turns logits into token ids, per sequence: penalties, greedy or temperature with top-k/top-p/min-p,
a seed per request, and the log-probabilities a request asked for."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workers.engine.sequence import Sequence

_SEED_MIX = 0x9E3779B97F4A7C15  # spreads (seed, position) pairs over the generator's seed space


@dataclass(frozen=True)
class Sample:
    token_id: int
    logprob: float | None = None  # of the chosen token under the model's distribution
    top_logprobs: list[tuple[int, float]] | None = None  # the most likely tokens, best first


def position_seed(seed: int, position: int) -> int:
    """The generator seed for one output position: the same whatever else shares the batch."""
    return (seed * _SEED_MIX + position) % (2**63 - 1)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float, min_p: float = 0.0) -> torch.Tensor:
    """Mask (to -inf) everything outside the top_k tokens, outside the top_p probability mass,
    and below min_p times the most likely token's probability."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop = (probs.cumsum(-1) - probs) >= top_p
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    if min_p > 0.0:
        probs = torch.softmax(logits, dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.max(), float("-inf"))
    return logits


def apply_repetition_penalty(logits: torch.Tensor, token_ids: list[int], penalty: float) -> torch.Tensor:
    """Make tokens already seen (prompt and output) less likely: positive logits divided, negative times."""
    if not token_ids:
        return logits
    ids = torch.tensor(sorted(set(token_ids)), device=logits.device)
    seen = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


class Sampler:
    def __init__(self, device: torch.device, eos_token_ids: set[int]) -> None:
        self.device = device
        self.eos_token_ids = sorted(eos_token_ids)
        self._unseeded = torch.Generator(device=device)
        self._unseeded.seed()

    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[Sample]:
        """One sample per row of logits [batch, vocab]; row i belongs to seqs[i]."""
        samples = []
        for i, seq in enumerate(seqs):
            opts = seq.options
            raw = logits[i]
            row = raw
            if opts.repetition_penalty != 1.0:  # all_ids builds a list: not on every step for everyone
                row = apply_repetition_penalty(raw, seq.all_ids, opts.repetition_penalty)
            if len(seq.output_ids) < opts.min_tokens and self.eos_token_ids:
                row = row.clone()
                row[self.eos_token_ids] = float("-inf")
            if opts.temperature == 0.0:
                token_id = int(row.argmax())
            else:
                row = filter_logits(row / opts.temperature, opts.top_k, opts.top_p, opts.min_p)
                gen = self._unseeded
                if opts.seed is not None:
                    gen = torch.Generator(device=self.device)
                    gen.manual_seed(position_seed(opts.seed, len(seq.output_ids)))
                token_id = int(torch.multinomial(torch.softmax(row, dim=-1), 1, generator=gen).item())
            samples.append(self._with_logprobs(raw, token_id, opts.logprobs))
        return samples

    @staticmethod
    def _with_logprobs(raw: torch.Tensor, token_id: int, num_top: int | None) -> Sample:
        if num_top is None:
            return Sample(token_id)
        logprobs = torch.log_softmax(raw, dim=-1)
        top: list[tuple[int, float]] = []
        if num_top > 0:
            values, ids = torch.topk(logprobs, num_top)
            top = list(zip(ids.tolist(), values.tolist(), strict=True))
        return Sample(token_id, float(logprobs[token_id]), top)
