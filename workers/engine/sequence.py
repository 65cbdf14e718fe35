"""One request inside the engine: its tokens, its sampling options, its KV blocks and its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol


class SequenceStatus(IntEnum):
    """Ordered: every status from FINISHED_STOPPED on counts as finished."""

    WAITING = 0
    RUNNING = 1
    FINISHED_STOPPED = 2
    FINISHED_LENGTH = 3
    FINISHED_ABORTED = 4
    FINISHED_ERROR = 5  # its own step failed (a constraint that broke, a row the model could not run)

    @property
    def is_finished(self) -> bool:
        return self >= SequenceStatus.FINISHED_STOPPED

    @property
    def finish_reason(self) -> str | None:
        return _FINISH_REASONS.get(self)


_FINISH_REASONS = {
    SequenceStatus.FINISHED_STOPPED: "stop",
    SequenceStatus.FINISHED_LENGTH: "length",
    SequenceStatus.FINISHED_ABORTED: "cancelled",
    SequenceStatus.FINISHED_ERROR: "error",
}


class TokenConstraint(Protocol):
    """Which tokens may come next (structured output). The engine knows nothing of what the rule is:
    it asks before sampling each token of the sequence."""

    def allowed(self, output_ids: list[int]) -> Any:
        """A bool tensor [vocab] of the tokens allowed after output_ids (all the sequence made so far)."""
        ...


@dataclass(frozen=True)
class SamplingOptions:
    """Per-sequence sampling; temperature 0 is greedy, top_k 0 and top_p 1 disable those filters."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0  # EOS is suppressed until this many tokens are out
    logprobs: int | None = None  # None: none; 0: the chosen token's; k: also the k most likely
    prompt_logprobs: int | None = None  # the prompt tokens' logprobs too (k alternatives); no prefix cache
    frequency_penalty: float = 0.0  # minus this times the token's count in the output
    presence_penalty: float = 0.0  # minus this once the token is in the output
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    constraint: TokenConstraint | None = None  # masks the tokens a rule does not allow next

    @property
    def is_adjusted(self) -> bool:
        """Whether anything changes this sequence's logits before sampling (bar min_tokens)."""
        return (
            self.repetition_penalty != 1.0
            or self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or bool(self.logit_bias)
            or self.constraint is not None
        )


@dataclass
class Sequence:
    seq_id: str
    prompt_ids: list[int]
    options: SamplingOptions
    output_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    block_table: list[int] = field(default_factory=list)  # its KV blocks, in order
    num_hashed_blocks: int = 0  # leading blocks registered for sharing (see the block manager)
    num_cached: int = 0  # tokens whose keys and values sit in the KV cache
    largest_batch: int = 0  # the most sequences that shared a step with this one
    group: str = ""  # fair share: sequences of one group yield slots to a group with none running
    admitted_at: int = 0  # the scheduler's admission counter when it last got a slot (newest: highest)
    num_preemptions: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def all_ids(self) -> list[int]:
        return self.prompt_ids + self.output_ids

    @property
    def use_prefix_cache(self) -> bool:
        """Prompt logprobs need every prompt position computed: such a sequence shares nothing."""
        return self.options.prompt_logprobs is None

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]
