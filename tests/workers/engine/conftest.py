"""Factories for engine tests on the built-in tiny model (the `tiny` fixture: tests/workers/conftest.py)."""

from __future__ import annotations

import random

import torch

from workers.engine import LLMEngine, SamplingOptions
from workers.model_loader import LoadedModel


def make_engine(
    tiny: LoadedModel,
    max_batch: int = 4,
    max_model_len: int = 256,
    max_batch_tokens: int = 512,
    num_blocks: int | None = None,
    block_size: int = 16,
    prefix_caching: bool = True,
) -> LLMEngine:
    """An engine on the tiny model; by default with blocks for max_batch whole contexts."""
    blocks = num_blocks if num_blocks is not None else max_batch * -(-max_model_len // block_size)
    return LLMEngine(
        tiny.model,
        max_batch,
        max_model_len,
        {tiny.tokenizer.eos_token_id},
        max_batch_tokens=max_batch_tokens,
        num_blocks=blocks,
        block_size=block_size,
        enable_prefix_caching=prefix_caching,
    )


def make_prompts(n: int, seed: int = 0, min_len: int = 3, max_len: int = 40) -> list[list[int]]:
    """n random prompts of different lengths: BOS then random byte tokens."""
    rng = random.Random(seed)
    return [[1] + [rng.randrange(3, 259) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]


def reference_greedy(
    tiny: LoadedModel, prompt: list[int], max_new_tokens: int, *, ignore_eos: bool = False
) -> list[int]:
    """model.generate on the prompt alone: the ground truth for greedy decoding (past EOS when
    ignore_eos, as the engine's own option does)."""
    extra = {"eos_token_id": None, "min_new_tokens": max_new_tokens} if ignore_eos else {}
    out = tiny.model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        **extra,
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
    )
    return out[0, len(prompt) :].tolist()


def run_to_completion(
    engine: LLMEngine,
    arrivals: dict[int, list[tuple[str, list[int], SamplingOptions]]],
    max_steps: int = 10_000,
) -> dict[str, list[int]]:
    """Step the engine, adding arrivals[k] before step k; returns each sequence's output ids."""
    outputs: dict[str, list[int]] = {}
    step = 0
    while step < max_steps and (engine.has_work() or any(k >= step for k in arrivals)):
        for seq_id, prompt, opts in arrivals.get(step, []):
            engine.add_request(seq_id, prompt, opts)
        for out in engine.step():
            if out.token_id is not None:
                outputs.setdefault(out.seq_id, []).append(out.token_id)
        step += 1
    return outputs
