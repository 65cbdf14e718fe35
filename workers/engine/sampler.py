"""Turns logits into token ids for the whole batch at once, on the model's device: penalties, bias and
constraints (logits_adjust.py), greedy or temperature with top-k/top-p/min-p, a seed per request, and
the log-probabilities a request asked for.

Sampling inverts the cumulative distribution: one uniform draw u per row picks the first token whose
running probability mass exceeds u. That is one number per row instead of noise over the whole
vocabulary (the exponential race it replaced drew 49,152 exponentials per row, a fifth of a CPU decode
step at batch 32). A seeded request draws its u from (seed, output position), so its tokens do not
depend on who else shares the batch, nor on the device.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from workers.engine.logits_adjust import adjust_row
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


# top-k/top-p look for their tokens among the most likely 64, then 1,024, then all: a nucleus is usually
# small, and sorting a whole 49,152-token row takes longer than a CPU decode step.
CANDIDATE_WIDTHS = (64, 1024)


def filter_logits(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    """Per row of logits [N, V], mask (to -inf) everything outside its top_k tokens (0: off), outside
    its top_p probability mass (1: off), and below min_p times its most likely token's probability."""
    vocab = logits.shape[-1]
    k = torch.where(top_k > 0, top_k, vocab).clamp(max=vocab)
    nucleus = top_p < 1.0
    if bool((k < vocab).any()) or bool(nucleus.any()):
        logits = _top_k_top_p(logits, k, top_p, nucleus)
    if bool((min_p > 0.0).any()):
        probs = torch.softmax(logits, dim=-1)
        logits = logits.masked_fill(probs < min_p[:, None] * probs.amax(-1, keepdim=True), float("-inf"))
    return logits


def _top_k_top_p(
    logits: torch.Tensor, k: torch.Tensor, top_p: torch.Tensor, nucleus: torch.Tensor
) -> torch.Tensor:
    """Top-k, then top-p: the k most likely tokens, then of those the fewest whose renormalized mass
    reaches top_p (a token stays while the mass before it is below top_p); the rest to -inf.

    The rows are ranked with torch.topk over a few candidates, widened while some row's nucleus may
    reach past them (every candidate kept and their mass short of its top_p)."""
    vocab = logits.shape[-1]
    filtering_k = k < vocab
    most_k = int(k[filtering_k].max()) if bool(filtering_k.any()) else 0
    widths = sorted({min(vocab, max(w, most_k)) for w in CANDIDATE_WIDTHS} | {vocab})
    # The normalizer of a row whose k is off: a pass over every row, skipped when each row has its k.
    full_norm = None if bool(filtering_k.all()) else torch.logsumexp(logits, dim=-1)
    for width in widths:
        top_logits, order = torch.topk(logits, width, dim=-1)
        in_k = torch.arange(width, device=logits.device)[None, :] < k[:, None]
        # Renormalized over the k kept tokens (all among the candidates when k is on).
        kept_norm = torch.logsumexp(top_logits.masked_fill(~in_k, float("-inf")), dim=-1)
        norm = kept_norm if full_norm is None else torch.where(filtering_k, kept_norm, full_norm)
        probs = torch.exp(top_logits - norm[:, None]).masked_fill(~in_k, 0.0)
        keep = in_k & ~(nucleus[:, None] & ((probs.cumsum(-1) - probs) >= top_p[:, None]))
        wide = nucleus & (k > width) & (probs.sum(-1) < top_p)
        if width == vocab or not bool(wide.any()):
            break
    out = torch.full_like(logits, float("-inf")).scatter_(
        1, order, top_logits.masked_fill(~keep, float("-inf"))
    )
    untouched = ~filtering_k & ~nucleus  # rows that ask for neither
    if bool(untouched.any()):
        out[untouched] = logits[untouched]
    return out


class Sampler:
    def __init__(self, device: torch.device, eos_token_ids: set[int]) -> None:
        self.device = device
        self.eos_token_ids = torch.tensor(sorted(eos_token_ids), dtype=torch.long, device=device)
        self._unseeded = random.Random()  # seeded from the OS

    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[Sample]:
        """One sample per row of logits [batch, vocab]; row i belongs to seqs[i]."""
        if not seqs:  # only prompt chunks ran: nothing to sample yet
            return []
        opts = [s.options for s in seqs]
        rows = self._adjusted(logits, seqs)
        sampled = [i for i, o in enumerate(opts) if o.temperature > 0.0]
        everyone = len(sampled) == len(opts)  # then skip the greedy argmax and the row selection
        tokens = torch.empty(len(opts), dtype=torch.long, device=self.device) if everyone else rows.argmax(-1)
        if sampled:
            idx = torch.tensor(sampled, device=self.device)

            def column(values: list[float]) -> torch.Tensor:
                return torch.tensor(values, device=self.device)

            sub = (rows if everyone else rows[idx]) / column([opts[i].temperature for i in sampled])[:, None]
            sub = filter_logits(
                sub,
                column([opts[i].top_k for i in sampled]).long(),
                column([opts[i].top_p for i in sampled]),
                column([opts[i].min_p for i in sampled]),
            )
            probs = torch.softmax(sub, dim=-1)
            draws = [self._uniform(opts[i].seed, len(seqs[i].output_ids)) for i in sampled]
            # right=True never lands on a token of zero probability (one filtered out).
            mass = probs.cumsum(-1)
            target = torch.tensor(draws, device=self.device)[:, None] * mass[:, -1:]
            picked = torch.searchsorted(mass, target, right=True)[:, 0]
            tokens[idx] = picked.clamp_(max=probs.shape[-1] - 1)
        token_ids: list[int] = tokens.tolist()
        return self._with_logprobs(logits, token_ids, [o.logprobs for o in opts])

    def _uniform(self, seed: int | None, position: int) -> float:
        """A draw in [0, 1): from (seed, position) for a seeded request, else from the engine's own."""
        if seed is None:
            return self._unseeded.random()
        return random.Random(position_seed(seed, position)).random()

    def _adjusted(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        """Logits after penalties, logit bias, constraints and EOS suppression (min_tokens); the input is
        not changed."""
        adjusted = [i for i, s in enumerate(seqs) if s.options.is_adjusted]
        suppressed = [i for i, s in enumerate(seqs) if len(s.output_ids) < s.options.min_tokens]
        if not adjusted and not (suppressed and len(self.eos_token_ids)):
            return logits
        rows = logits.clone()
        for i in adjusted:
            rows[i] = adjust_row(rows[i], seqs[i])
        if suppressed and len(self.eos_token_ids):
            rows[torch.tensor(suppressed, device=self.device)[:, None], self.eos_token_ids] = float("-inf")
        return rows

    @staticmethod
    def _with_logprobs(raw: torch.Tensor, token_ids: list[int], wanted: list[int | None]) -> list[Sample]:
        asked = [i for i, n in enumerate(wanted) if n is not None]
        if not asked:
            return [Sample(t) for t in token_ids]
        idx = torch.tensor(asked, device=raw.device)
        logprobs = torch.log_softmax(raw[idx], dim=-1)
        chosen = logprobs.gather(1, torch.tensor([[token_ids[i]] for i in asked], device=raw.device))
        most = max(wanted[i] or 0 for i in asked)
        top_values, top_ids = torch.topk(logprobs, most) if most else (logprobs[:, :0], logprobs[:, :0])
        chosen_list, values_list, ids_list = chosen[:, 0].tolist(), top_values.tolist(), top_ids.tolist()
        samples = [Sample(t) for t in token_ids]
        for row, i in enumerate(asked):
            n = wanted[i] or 0
            top = list(zip(ids_list[row][:n], values_list[row][:n], strict=True))
            samples[i] = Sample(token_ids[i], float(chosen_list[row]), top)
        return samples
