"""The engine on a CUDA device: greedy tokens equal model.generate's there, in fp32, with requests
joining, preempted and prefix-cached; in bf16 every request finishes with tokens of the vocabulary.
Skipped without CUDA (the `gpu` marker)."""

from __future__ import annotations

import pytest
import torch

from tests.workers.engine.conftest import make_prompts
from workers.builtin_model import random_model
from workers.engine import LLMEngine, SamplingOptions

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def run(engine: LLMEngine, prompts: list[list[int]], new_tokens: int) -> dict[str, list[int]]:
    opts = SamplingOptions(max_new_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    tokens: dict[str, list[int]] = {f"r{i}": [] for i in range(len(prompts))}
    for i, prompt in enumerate(prompts):
        engine.add_request(f"r{i}", prompt, opts)
    while engine.has_work():
        for out in engine.step():
            if out.token_id is not None:
                tokens[out.seq_id].append(out.token_id)
    return tokens


@torch.inference_mode()
def test_greedy_on_cuda_equals_generate_with_preemption_and_shared_prefixes() -> None:
    model = random_model("tiny", device="cuda", dtype=torch.float32).eval()
    shared = make_prompts(1, seed=5, min_len=40, max_len=40)[0]
    prompts = [shared + p[1:] for p in make_prompts(6, seed=6)]  # a 41-token prefix in common
    engine = LLMEngine(model, 6, 128, set(), max_batch_tokens=64, num_blocks=24, block_size=16)
    got = run(engine, prompts, 24)
    assert engine.scheduler.num_preemptions > 0 and engine.prefix_cache_hit_rate > 0
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt], device="cuda")
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24,
                             do_sample=False, eos_token_id=None)  # fmt: skip
        assert got[f"r{i}"] == out[0, len(prompt) :].tolist(), f"request r{i} diverged"


@torch.inference_mode()
def test_bf16_on_cuda_finishes_every_request() -> None:
    model = random_model("tiny", device="cuda", dtype=torch.bfloat16).eval()
    engine = LLMEngine(model, 8, 256, set(), max_batch_tokens=128, num_blocks=64)
    got = run(engine, make_prompts(8, seed=7), 32)
    assert all(len(t) == 32 and all(0 <= x < model.config.vocab_size for x in t) for t in got.values())
