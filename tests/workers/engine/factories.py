"""Model-free factories for scheduler and sampler tests, in the manner of vLLM's create_requests()."""

from __future__ import annotations

from typing import Any

from workers.engine import SamplingOptions, Sequence
from workers.engine.block_manager import BlockManager
from workers.engine.scheduler import Scheduler

EOS = 2


def make_seqs(
    n: int,
    prompt_len: int = 4,
    max_new_tokens: int = 8,
    prefix: str = "s",
    temperature: float = 0.0,
    **options: Any,
) -> list[Sequence]:
    """n waiting sequences with prompts of prompt_len tokens (ids 10, 11, ...); greedy by default."""
    opts = SamplingOptions(max_new_tokens=max_new_tokens, temperature=temperature, **options)
    return [Sequence(f"{prefix}{i}", list(range(10, 10 + prompt_len)), opts) for i in range(n)]


def make_scheduler(
    max_batch: int = 4,
    max_model_len: int = 64,
    max_batch_tokens: int = 32,
    num_blocks: int = 64,
    block_size: int = 4,
    prefix_caching: bool = True,
) -> Scheduler:
    blocks = BlockManager(num_blocks, block_size, prefix_caching)
    return Scheduler(max_batch, max_model_len, {EOS}, max_batch_tokens, blocks)
