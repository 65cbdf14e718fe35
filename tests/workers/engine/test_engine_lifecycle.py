"""Seeded sampling ignores batch composition; aborts and finishes never leak a slot; limits hold."""

from __future__ import annotations

import random

import pytest
import torch

from tests.workers.engine.conftest import make_engine, make_prompts, run_to_completion
from workers.engine import SamplingOptions
from workers.engine.sampler import filter_logits
from workers.model_loader import LoadedModel

SEEDED = SamplingOptions(max_new_tokens=20, temperature=0.9, top_k=40, top_p=0.95, seed=1234, ignore_eos=True)


def test_seeded_sampling_is_the_same_in_any_batch(tiny: LoadedModel) -> None:
    target = make_prompts(1, seed=9)[0]
    alone = run_to_completion(make_engine(tiny), {0: [("t", target, SEEDED)]})["t"]
    others = [
        (f"o{i}", p, SamplingOptions(max_new_tokens=7 + i, temperature=1.0, ignore_eos=True))
        for i, p in enumerate(make_prompts(3, seed=10))
    ]
    crowded = run_to_completion(make_engine(tiny), {0: others[:2], 2: [("t", target, SEEDED)], 4: others[2:]})
    assert crowded["t"] == alone
    other_seed = SamplingOptions(**{**SEEDED.__dict__, "seed": 99})
    assert run_to_completion(make_engine(tiny), {0: [("t", target, other_seed)]})["t"] != alone


def test_no_slot_leaks_after_many_requests_with_random_aborts(tiny: LoadedModel) -> None:
    rng = random.Random(5)
    engine = make_engine(tiny, max_batch=4)
    prompts = make_prompts(50, seed=3, max_len=12)
    added, finished = 0, set()
    live: list[str] = []
    while added < 1000 or engine.has_work():
        for _ in range(rng.randint(0, 3)):
            if added < 1000:
                opts = SamplingOptions(max_new_tokens=rng.randint(1, 5), temperature=rng.choice([0.0, 1.0]))
                engine.add_request(f"r{added}", prompts[added % 50], opts)
                live.append(f"r{added}")
                added += 1
        if live and rng.random() < 0.3:
            victim = live.pop(rng.randrange(len(live)))
            if engine.abort(victim):
                finished.add(victim)
        for out in engine.step():
            if out.finish_reason is not None:
                finished.add(out.seq_id)
                if out.seq_id in live:
                    live.remove(out.seq_id)
        assert engine.num_free_slots + len(engine.scheduler.running) == 4
    assert len(finished) == 1000
    assert engine.num_free_slots == 4 and not engine.seqs


def test_context_length_finishes_with_length(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_model_len=24)
    prompt = make_prompts(1, min_len=19, max_len=19)[0]  # 20 tokens with BOS
    engine.add_request("r", prompt, SamplingOptions(max_new_tokens=100, temperature=0.0, ignore_eos=True))
    outs = []
    while engine.has_work():
        outs.extend(engine.step())
    assert len(outs) == 4 and outs[-1].finish_reason == "length"


def test_prompt_that_cannot_fit_is_refused(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_model_len=16)
    with pytest.raises(ValueError, match="context is 16"):
        engine.add_request("r", list(range(3, 19)), SamplingOptions())
    assert not engine.has_work()


def test_eos_stops_unless_ignored(tiny: LoadedModel) -> None:
    engine = make_engine(tiny)
    prompt = make_prompts(1)[0]
    first = run_to_completion(
        engine, {0: [("a", prompt, SamplingOptions(max_new_tokens=3, temperature=0.0))]}
    )
    engine.scheduler.eos_token_ids = {first["a"][0]}  # make the first greedy token count as EOS
    out = run_to_completion(engine, {0: [("b", prompt, SamplingOptions(max_new_tokens=3, temperature=0.0))]})
    assert out["b"] == first["a"][:1]
    opts = SamplingOptions(max_new_tokens=3, temperature=0.0, ignore_eos=True)
    assert run_to_completion(engine, {0: [("c", prompt, opts)]})["c"] == first["a"]


def test_top_k_top_p_and_min_p_filter_each_row_by_its_own_settings() -> None:
    # softmax of a row is about [0.09, 0.64, 0.24, 0.03].
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0]).repeat(5, 1)
    top_k = torch.tensor([2, 0, 0, 0, 3])
    top_p = torch.tensor([1.0, 0.7, 0.01, 1.0, 0.5])
    min_p = torch.tensor([0.0, 0.0, 0.0, 0.2, 0.0])
    kept = torch.isfinite(filter_logits(logits, top_k, top_p, min_p)).tolist()
    assert kept[0] == [False, True, True, False]  # top_k 2
    assert kept[1] == [False, True, True, False]  # top_p 0.7 keeps the two most likely
    assert kept[2] == [False, True, False, False]  # the top token always stays
    assert kept[3] == [False, True, True, False]  # min_p 0.2: 0.09 < 0.2 * 0.64
    assert kept[4] == [False, True, False, False]  # top_k 3, then top_p 0.5 of what is left
