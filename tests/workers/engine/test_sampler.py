"""The sampler alone, on made-up logits: greedy, seeds, filters, penalties, min_tokens, logprobs."""

from __future__ import annotations

import torch

from tests.workers.engine.factories import EOS, make_seqs
from workers.engine.logits_adjust import apply_repetition_penalty
from workers.engine.sampler import Sampler, filter_logits

CPU = torch.device("cpu")


def sampler() -> Sampler:
    return Sampler(CPU, {EOS})


def test_greedy_takes_the_argmax_of_each_row() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0, 0.0], [3.0, 0.0, 0.0, 2.0]])
    samples = sampler().sample(logits, make_seqs(2))
    assert [s.token_id for s in samples] == [1, 0]
    assert all(s.logprob is None for s in samples)


def test_a_seeded_row_draws_the_same_token_whatever_shares_the_batch() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    [seeded] = make_seqs(1, seed=7, temperature=1.0)
    others = make_seqs(2, prefix="o")
    alone = sampler().sample(logits[:1], [seeded])[0].token_id
    for order in ([seeded, *others], [*others, seeded]):
        row = order.index(seeded)
        batch = torch.stack([logits[0] if s is seeded else logits[1 + i % 2] for i, s in enumerate(order)])
        assert sampler().sample(batch, order)[row].token_id == alone


def test_a_seed_gives_a_distribution_that_follows_the_probabilities() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    counts = [0, 0, 0]
    for seed in range(600):
        [seq] = make_seqs(1, seed=seed, temperature=1.0)
        counts[sampler().sample(logits, [seq])[0].token_id] += 1
    assert counts[0] > counts[1] > counts[2] > 0  # about 420, 120, 60


def test_draws_match_the_probabilities_and_never_pick_an_impossible_token() -> None:
    """2,000 seeded draws of one row with two impossible tokens: every frequency within 5 sigma of its
    probability, the impossible never drawn, alone or next to a greedy row."""
    probs = torch.tensor([0.5, 0.0, 0.3, 0.0, 0.2])
    logits = torch.log(probs)[None, :]
    draws = 2000
    counts = [0] * len(probs)
    for seed in range(draws):
        seqs = make_seqs(1, seed=seed, temperature=1.0) + make_seqs(1, prefix="g")
        batch = torch.cat([logits, torch.tensor([[0.0, 9.0, 0.0, 0.0, 0.0]])])
        sample, greedy = sampler().sample(batch, seqs)
        counts[sample.token_id] += 1
        assert greedy.token_id == 1
    assert counts[1] == counts[3] == 0
    for p, n in zip(probs.tolist(), counts, strict=True):
        sigma = (draws * p * (1 - p)) ** 0.5
        assert abs(n - draws * p) <= 5 * sigma, counts


def test_min_tokens_holds_eos_off_until_enough_tokens() -> None:
    logits = torch.zeros(1, 5)
    logits[0, EOS] = 10.0
    [seq] = make_seqs(1, min_tokens=2)
    assert sampler().sample(logits, [seq])[0].token_id != EOS
    seq.output_ids = [7, 8]
    assert sampler().sample(logits, [seq])[0].token_id == EOS


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens() -> None:
    logits = torch.tensor([2.0, -2.0, 2.0])
    out = apply_repetition_penalty(logits, [0, 1, 0], penalty=2.0)
    assert out.tolist() == [1.0, -4.0, 2.0]
    assert logits.tolist() == [2.0, -2.0, 2.0]  # the input is not changed


def test_logprobs_of_the_chosen_token_and_the_top_alternatives() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    [seq] = make_seqs(1, logprobs=2)
    [sample] = sampler().sample(logits, [seq])
    assert sample.token_id == 0
    assert abs((sample.logprob or 0) - torch.log(torch.tensor(0.5)).item()) < 1e-6
    assert [t for t, _ in sample.top_logprobs or []] == [0, 1]


def test_no_rows_no_samples() -> None:
    assert sampler().sample(torch.zeros(0, 4), []) == []


def test_frequency_and_presence_penalties_count_the_output_tokens_only() -> None:
    logits = torch.zeros(1, 20)
    logits[0, 5] = 3.0  # token 5 would win, and it is in the output twice
    logits[0, 6] = 2.0
    [seq] = make_seqs(1, frequency_penalty=0.4, presence_penalty=0.5)
    seq.prompt_ids = [6, 6, 6]  # the prompt is not penalised (OpenAI's and vLLM's semantics)
    seq.output_ids = [5, 5]
    adjusted = sampler()._adjusted(logits, [seq])
    assert abs(adjusted[0, 5].item() - (3.0 - 2 * 0.4 - 0.5)) < 1e-6
    assert adjusted[0, 6].item() == 2.0
    assert sampler().sample(logits, [seq])[0].token_id == 6


def test_penalties_and_bias_apply_per_row_and_leave_other_rows_alone() -> None:
    logits = torch.zeros(2, 10)
    logits[:, 3] = 1.0
    [biased] = make_seqs(1, logit_bias={7: 5.0, 3: -100.0})
    [plain] = make_seqs(1, prefix="p")
    samples = sampler().sample(logits, [biased, plain])
    assert [s.token_id for s in samples] == [7, 3]


def test_logit_bias_leaves_the_reported_logprobs_those_of_the_model() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    [seq] = make_seqs(1, logit_bias={2: 50.0}, logprobs=0)
    [sample] = sampler().sample(logits, [seq])
    assert sample.token_id == 2
    assert abs((sample.logprob or 0.0) - torch.log(torch.tensor(0.2)).item()) < 1e-6


class _OnlyEven:
    """A constraint that allows even token ids, and records what it was asked after."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    def allowed(self, output_ids: list[int]) -> torch.Tensor:
        self.asked.append(list(output_ids))
        return torch.arange(10) % 2 == 0


def test_a_constraint_masks_the_tokens_it_does_not_allow_even_against_a_bias() -> None:
    logits = torch.zeros(1, 10)
    logits[0, 3] = 9.0
    constraint = _OnlyEven()
    [seq] = make_seqs(1, constraint=constraint, logit_bias={5: 100.0}, temperature=1.0, seed=1)
    seq.output_ids = [4]
    for _ in range(20):
        assert sampler().sample(logits, [seq])[0].token_id % 2 == 0
    assert constraint.asked[0] == [4]


def sorted_filter(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Top-k then top-p by sorting every row whole: the definition filter_logits must keep to."""
    vocab = logits.shape[-1]
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    drop = torch.arange(vocab)[None, :] >= torch.where(top_k > 0, top_k, vocab)[:, None]
    probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
    drop |= (top_p[:, None] < 1.0) & ((probs.cumsum(-1) - probs) >= top_p[:, None])
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def test_top_k_and_top_p_keep_what_sorting_every_row_keeps() -> None:
    """Nuclei inside the first 64 candidates, inside 1,024, and wider (the whole row sorted), with and
    without top_k (one past 1,024), next to a row that filters nothing."""
    gen = torch.Generator().manual_seed(3)
    vocab = 5000
    spreads = [12.0, 12.0, 3.0, 3.0, 0.3, 0.3, 3.0, 0.3, 12.0]
    logits = torch.stack([torch.randn(vocab, generator=gen) * s for s in spreads])
    top_k = torch.tensor([0, 40, 0, 300, 0, 2000, 2000, 0, 0])
    top_p = torch.tensor([0.9, 0.95, 0.9, 0.99, 0.95, 0.9, 1.0, 1.0, 1.0])
    none = torch.zeros(len(spreads))
    filtered = filter_logits(logits, top_k, top_p, none)
    expected = sorted_filter(logits, top_k, top_p)
    assert torch.equal(torch.isfinite(filtered), torch.isfinite(expected))
    assert torch.equal(filtered[torch.isfinite(filtered)], logits[torch.isfinite(expected)])
    kept = torch.isfinite(filtered).sum(-1).tolist()
    assert kept[0] < 64 and 64 < kept[2] < 1024 and kept[4] > 1024 and kept[7] == kept[8] == vocab, kept
