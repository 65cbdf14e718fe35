"""Greedy decoding in the batch equals model.generate on each prompt alone."""

from __future__ import annotations

from tests.workers.engine.conftest import make_engine, make_prompts, reference_greedy, run_to_completion
from workers.engine import SamplingOptions
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
