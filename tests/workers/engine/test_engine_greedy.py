"""Greedy decoding in the batch equals model.generate on each prompt alone."""

from __future__ import annotations

import random

import pytest

from tests.workers.engine.conftest import make_engine, make_prompts, reference_greedy, run_to_completion
from workers.engine import SamplingOptions
from workers.engine.model_runner import ModelRunner
from workers.model_loader import LoadedModel


def test_greedy_matches_generate_while_requests_join_and_leave(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_batch=4)
    prompts = make_prompts(7, seed=1)
    lengths = [5, 17, 9, 30, 3, 12, 21]  # different lengths, so sequences leave at different steps
    arrivals: dict[int, list] = {}
    for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
        opts = SamplingOptions(max_new_tokens=n, temperature=0.0, ignore_eos=True)
        arrivals.setdefault(i * 3, []).append((f"r{i}", prompt, opts))  # staggered: a new one every 3 steps
    outputs = run_to_completion(engine, arrivals)
    for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
        assert outputs[f"r{i}"] == reference_greedy(tiny, prompt, n), f"request r{i} diverged"
    assert engine.stats.largest_batch == 4  # the batch filled up: requests really shared steps
    assert engine.num_free_slots == 4


def test_waiting_requests_join_when_slots_free(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_batch=2)
    prompts = make_prompts(5, seed=2)
    opts = SamplingOptions(max_new_tokens=6, temperature=0.0, ignore_eos=True)
    outputs = run_to_completion(engine, {0: [(f"r{i}", p, opts) for i, p in enumerate(prompts)]})
    assert all(len(outputs[f"r{i}"]) == 6 for i in range(5))
    assert engine.stats.largest_batch == 2
    assert outputs["r4"] == reference_greedy(tiny, prompts[4], 6)


def test_chunked_prefill_under_a_small_token_budget_matches_generate(tiny: LoadedModel) -> None:
    # A budget of 6 tokens a step: running decodes take theirs first, and every prompt (3 to 40
    # tokens) is prefilled in chunks, each chunk attending to the ones before it in the slot.
    engine = make_engine(tiny, max_batch=4, max_batch_tokens=6)
    prompts = make_prompts(6, seed=3)
    arrivals: dict[int, list] = {}
    for i, prompt in enumerate(prompts):
        opts = SamplingOptions(max_new_tokens=8 + i, temperature=0.0, ignore_eos=True)
        arrivals.setdefault(i * 2, []).append((f"r{i}", prompt, opts))
    outputs = run_to_completion(engine, arrivals)
    for i, prompt in enumerate(prompts):
        assert outputs[f"r{i}"] == reference_greedy(tiny, prompt, 8 + i), f"request r{i} diverged"
    assert engine.stats.largest_batch == 4
    assert engine.num_free_slots == 4


def test_resumed_sequence_continues_exactly_where_it_stopped(tiny: LoadedModel) -> None:
    # A worker that takes over a request prefills the prompt plus the tokens already streamed.
    prompt = make_prompts(1, seed=4)[0]
    full = reference_greedy(tiny, prompt, 12)
    engine = make_engine(tiny, max_batch=2, max_batch_tokens=8)
    engine.add_request("r", prompt, SamplingOptions(max_new_tokens=12, temperature=0.0), output_ids=full[:5])
    outputs = run_to_completion(engine, {})
    assert full[:5] + outputs["r"] == full


def test_preempted_sequences_continue_greedy_identical(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_batch=2)
    prompts = make_prompts(4, seed=21)
    opts = SamplingOptions(max_new_tokens=24, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(prompts[:3]):
        engine.add_request(f"a{i}", prompt, opts, group="a")
    outputs: dict[str, list[int]] = {}
    for step in range(200):
        if step == 5:
            engine.add_request("b0", prompts[3], opts, group="b")  # takes a slot from a's newest
        for out in engine.step():
            if out.token_id is not None:
                outputs.setdefault(out.seq_id, []).append(out.token_id)
        if not engine.has_work():
            break
    assert engine.scheduler.num_preemptions >= 1
    for i, prompt in enumerate(prompts[:3]):
        assert outputs[f"a{i}"] == reference_greedy(tiny, prompt, 24)
    assert outputs["b0"] == reference_greedy(tiny, prompts[3], 24)


def test_decodes_of_very_different_lengths_gather_in_groups_and_match_generate(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Contexts of about 20, 300, 700 and 1,100 tokens fall in four length groups (up to 256, 512, 1,024
    # and 2,048 tokens): each group is gathered padded to its own longest, and the outputs go back to
    # their places in the packed row.
    groups_seen: list[int] = []
    split = ModelRunner._decode_groups

    def spy(self: ModelRunner, decode: list) -> list:
        groups = split(self, decode)
        groups_seen.append(len(groups))
        return groups

    monkeypatch.setattr(ModelRunner, "_decode_groups", spy)
    rng = random.Random(7)
    prompts = [[1] + [rng.randrange(3, 259) for _ in range(n - 1)] for n in (1100, 20, 700, 300, 21)]
    engine = make_engine(tiny, max_batch=5, max_model_len=1200)
    opts = SamplingOptions(max_new_tokens=10, temperature=0.0, ignore_eos=True)
    outputs = run_to_completion(engine, {0: [(f"r{i}", p, opts) for i, p in enumerate(prompts)]})
    for i, prompt in enumerate(prompts):
        expected = reference_greedy(tiny, prompt, 10, ignore_eos=True)
        assert outputs[f"r{i}"] == expected, f"request r{i} diverged"
    assert max(groups_seen) == 4  # every decode step once all five run: four length groups
