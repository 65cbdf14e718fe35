"""The paged engine on the tiny model: prefix hits give the same tokens as misses, preempted requests
finish greedy-identical, blocks never leak, short requests fill a long-context budget, and prompt
logprobs equal a direct forward pass."""

from __future__ import annotations

import random

import torch

from tests.workers.engine.conftest import make_engine, make_prompts, reference_greedy, run_to_completion
from workers.engine import LLMEngine, SamplingOptions
from workers.model_loader import LoadedModel

GREEDY = SamplingOptions(max_new_tokens=12, temperature=0.0, ignore_eos=True)


def test_a_prefix_hit_gives_the_same_tokens_as_a_miss(tiny: LoadedModel) -> None:
    system = make_prompts(1, seed=11, min_len=60, max_len=60)[0]  # a long shared beginning
    questions = make_prompts(3, seed=12, min_len=5, max_len=9)
    prompts = [system + q[1:] for q in questions]
    engine = make_engine(tiny, max_batch=4, block_size=8)
    outputs = run_to_completion(engine, {0: [("first", prompts[0], GREEDY)]})
    later = run_to_completion(engine, {0: [(f"q{i}", p, GREEDY) for i, p in enumerate(prompts[1:])]})
    assert outputs["first"] == reference_greedy(tiny, prompts[0], 12, ignore_eos=True)
    for i, p in enumerate(prompts[1:]):
        assert later[f"q{i}"] == reference_greedy(tiny, p, 12, ignore_eos=True)
    # The later two found the shared 56 tokens (7 blocks of 8) already computed.
    assert engine.blocks.num_prefix_hits == 2 * 56 and engine.prefix_cache_hit_rate > 0.5
    cold = make_engine(tiny, max_batch=4, block_size=8, prefix_caching=False)
    assert run_to_completion(cold, {0: [("q", prompts[1], GREEDY)]})["q"] == later["q0"]
    assert cold.blocks.num_prefix_hits == 0


def test_requests_preempted_when_blocks_run_out_finish_greedy_identical(tiny: LoadedModel) -> None:
    prompts = make_prompts(4, seed=13, min_len=20, max_len=30)
    opts = SamplingOptions(max_new_tokens=40, temperature=0.0, ignore_eos=True)
    # 4 requests of up to 71 tokens need up to 20 blocks of 16; 12 cannot hold them all at once.
    engine = make_engine(tiny, max_batch=4, num_blocks=12, block_size=16)
    outputs = run_to_completion(engine, {0: [(f"r{i}", p, opts) for i, p in enumerate(prompts)]})
    assert engine.scheduler.num_preemptions > 0
    for i, prompt in enumerate(prompts):
        assert outputs[f"r{i}"] == reference_greedy(tiny, prompt, 40, ignore_eos=True), (
            f"r{i} diverged after preemption"
        )
    assert engine.blocks.num_free == 12


def test_no_block_leaks_after_many_requests_with_aborts_preemptions_and_shared_prefixes(
    tiny: LoadedModel,
) -> None:
    rng = random.Random(7)
    engine = make_engine(tiny, max_batch=6, num_blocks=24, block_size=4)
    shared = make_prompts(1, seed=14, min_len=10, max_len=10)[0]
    prompts = [shared + p[1:] if i % 2 else p for i, p in enumerate(make_prompts(50, seed=15, max_len=14))]
    added, live = 0, []
    while added < 1000 or engine.has_work():
        for _ in range(rng.randint(0, 3)):
            if added < 1000:
                opts = SamplingOptions(max_new_tokens=rng.randint(1, 8), temperature=rng.choice([0.0, 1.0]))
                engine.add_request(f"r{added}", prompts[added % 50], opts, group=rng.choice("ab"))
                live.append(f"r{added}")
                added += 1
        if live and rng.random() < 0.3:
            engine.abort(live.pop(rng.randrange(len(live))))
        for out in engine.step():
            if out.finish_reason is not None and out.seq_id in live:
                live.remove(out.seq_id)
        held = sum(len(s.block_table) for s in engine.scheduler.running)
        assert sum(b.ref_count for b in engine.blocks.blocks) == held  # every reference is a table entry
    assert engine.scheduler.num_preemptions > 0 and engine.blocks.num_prefix_hits > 0
    assert not engine.seqs and engine.blocks.num_free == 24
    assert all(b.ref_count == 0 for b in engine.blocks.blocks)


def test_a_long_context_budget_runs_many_short_requests_at_once(tiny: LoadedModel) -> None:
    # The budget a slot cache needs for 2 requests of 8192 tokens: 1024 blocks of 16.
    engine = LLMEngine(
        tiny.model,
        64,
        8192,
        {tiny.tokenizer.eos_token_id},
        max_batch_tokens=4096,
        num_blocks=1024,
        block_size=16,
    )
    opts = SamplingOptions(max_new_tokens=16, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(make_prompts(64, seed=16, min_len=20, max_len=40)):
        engine.add_request(f"r{i}", prompt, opts)
    engine.step()
    assert len(engine.scheduler.running) == 64  # 32 times the 2 a slot cache of this size holds


def test_prompt_logprobs_equal_a_direct_forward_pass(tiny: LoadedModel) -> None:
    prompt = make_prompts(1, seed=17, min_len=30, max_len=30)[0]
    engine = make_engine(tiny, max_batch=2, max_batch_tokens=8)  # the prompt goes in 4 chunks
    engine.add_request("echo", prompt, SamplingOptions(max_new_tokens=0, temperature=0.0, prompt_logprobs=2))
    outputs = []
    while engine.has_work():
        outputs.extend(engine.step())
    [out] = outputs
    assert out.token_id is None and out.finish_reason == "length" and out.num_output_tokens == 0
    with torch.no_grad():
        logits = tiny.model(torch.tensor([prompt])).logits[0].float()
    expected = torch.log_softmax(logits, -1)[torch.arange(len(prompt) - 1), torch.tensor(prompt[1:])]
    got = out.prompt_logprobs or []
    assert [p.token_id for p in got] == prompt and got[0].logprob is None
    assert torch.allclose(torch.tensor([p.logprob for p in got[1:]]), expected, atol=1e-4)
    assert all(len(p.top) == 2 for p in got[1:])
