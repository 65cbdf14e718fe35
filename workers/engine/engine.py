"""The engine: add requests at any time, call step() in a loop, read what each step produced.

Each step decodes every running sequence by one token and prefills newly admitted ones (in
chunks, within a token budget), all in one packed forward pass over the paged KV cache; then it
samples the whole batch at once and retires the finished. Sequences join and leave between steps
(continuous batching); a shared prompt prefix is computed once (prefix caching).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from workers.engine.block_manager import BlockManager
from workers.engine.model_runner import ModelRunner
from workers.engine.prompt_logprobs import PromptLogprob, prompt_logprobs
from workers.engine.sampler import Sample, Sampler
from workers.engine.scheduler import Schedule, Scheduler
from workers.engine.sequence import SamplingOptions, Sequence, SequenceStatus

DEFAULT_BLOCK_SIZE = 16


@dataclass(frozen=True)
class StepOutput:
    """What one sequence got from a step: a new token (None for a request of zero new tokens, whose
    prefill just ended), and whether that sequence is now finished."""

    seq_id: str
    token_id: int | None
    num_prompt_tokens: int
    num_output_tokens: int
    finish_reason: str | None  # None while the sequence runs on
    largest_batch: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None
    prompt_logprobs: list[PromptLogprob] | None = None  # with the first output, when asked for
    error: str | None = None  # why the sequence failed (finish_reason "error")


@dataclass
class EngineStats:
    num_steps: int = 0
    largest_batch: int = 0
    tokens_generated: int = 0


@dataclass
class _PromptLogprobs:
    """Prompt logprobs gathered chunk by chunk until the prompt is prefilled, by position (a preempted
    sequence recomputes its chunks: the same positions again)."""

    by_position: dict[int, PromptLogprob] = field(default_factory=dict)


class LLMEngine:
    def __init__(
        self,
        model: Any,
        max_batch: int,
        max_model_len: int,
        eos_token_ids: set[int],
        max_batch_tokens: int,
        num_blocks: int,
        block_size: int = DEFAULT_BLOCK_SIZE,
        enable_prefix_caching: bool = True,
    ) -> None:
        """`max_batch` caps the sequences running at once, `num_blocks` the KV cache (blocks of
        block_size tokens); `max_batch_tokens` caps the tokens one step runs (raised to max_batch)."""
        self.max_batch = max_batch
        self.max_model_len = max_model_len
        self.vocab_size: int = model.get_input_embeddings().num_embeddings
        self.blocks = BlockManager(num_blocks, block_size, enable_prefix_caching)
        self.runner = ModelRunner(model, num_blocks, block_size)
        self.sampler = Sampler(self.runner.device, eos_token_ids)
        self.scheduler = Scheduler(
            max_batch, max_model_len, eos_token_ids, max(max_batch_tokens, max_batch), self.blocks
        )
        self.seqs: dict[str, Sequence] = {}
        self.stats = EngineStats()
        self._prompt_logprobs: dict[str, _PromptLogprobs] = {}

    @property
    def num_free_slots(self) -> int:
        """Places for more running sequences (max_batch of them run at most)."""
        return self.max_batch - len(self.scheduler.running)

    @property
    def kv_cache_bytes(self) -> int:
        return self.runner.kv.num_bytes

    @property
    def kv_cache_usage(self) -> float:
        """The share of KV blocks held by running sequences."""
        return self.blocks.usage

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Prompt tokens found in the prefix cache, over prompt tokens looked up (0 before any)."""
        queried = self.blocks.num_prefix_queries
        return self.blocks.num_prefix_hits / queried if queried else 0.0

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    def add_request(
        self,
        seq_id: str,
        prompt_ids: list[int],
        options: SamplingOptions,
        output_ids: list[int] | None = None,
        group: str = "",
    ) -> None:
        """Queue a sequence; it joins the batch at the next step. Refuses a prompt that leaves no room.

        `output_ids` resumes a sequence another engine started: they are prefilled with the prompt
        and count toward max_new_tokens, and seeded sampling continues at their position. `group`
        is its fair-share group (see the scheduler).
        """
        if not prompt_ids:
            raise ValueError("the prompt has no tokens")
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(prompt_ids)} tokens; the model's context is {self.max_model_len}"
            )
        if seq_id in self.seqs:
            raise ValueError(f"sequence {seq_id} is already in the engine")
        if max(prompt_ids) >= self.vocab_size or min(prompt_ids) < 0:
            raise ValueError(f"the prompt has a token id outside the vocabulary (0 to {self.vocab_size - 1})")
        longest = min(len(prompt_ids) + options.max_new_tokens, self.max_model_len)
        if self.blocks.blocks_for(longest) > self.blocks.num_blocks:
            raise ValueError(
                f"the request may need {longest} tokens of KV cache; it holds {self.blocks.num_blocks} "
                f"blocks of {self.blocks.block_size} (raise KV_CACHE_MEMORY or lower max_new_tokens)"
            )
        seq = Sequence(seq_id, list(prompt_ids), options, output_ids=list(output_ids or []), group=group)
        self.seqs[seq_id] = seq
        if options.prompt_logprobs is not None:
            self._prompt_logprobs[seq_id] = _PromptLogprobs()
        self.scheduler.add(seq)

    def finish(self, seq_id: str, status: SequenceStatus) -> bool:
        """End a sequence now with a finished status, freeing its blocks; False if it is unknown."""
        seq = self.seqs.pop(seq_id, None)
        if seq is None:
            return False
        self._prompt_logprobs.pop(seq_id, None)
        self.scheduler.finish(seq, status)
        return True

    def abort(self, seq_id: str) -> bool:
        """Remove a sequence now (cancelled, timed out, handed back); False if it is unknown."""
        return self.finish(seq_id, SequenceStatus.FINISHED_ABORTED)

    @torch.inference_mode()
    def step(self) -> list[StepOutput]:
        """Run one scheduling step; returns one output per sequence that sampled a token in it (or that
        finished its prompt with no token to make, or failed).

        A sequence whose part of the step fails (its constraint, its rows of the forward pass or of
        sampling) ends alone with finish_reason "error"; the others carry on as if it had not been there.
        """
        schedule = self.scheduler.schedule()
        if not schedule.seqs:
            return []
        errors: dict[str, str] = {}  # seq_id -> why its part of the step failed
        try:
            samples = self._compute(schedule)
        except Exception:
            samples, errors = self._compute_alone(schedule)
        for seq in schedule.seqs:
            if seq.seq_id in errors:
                self.scheduler.finish(seq, SequenceStatus.FINISHED_ERROR)
        kept = schedule.without(set(errors))
        self.scheduler.postprocess(kept, [samples[seq.seq_id].token_id for seq in kept.sampled])
        return self._outputs(schedule, kept, samples, errors)

    def _compute(self, schedule: Schedule) -> dict[str, Sample]:
        """The forward pass, the prompt logprobs and the samples of a step: {seq_id: sample}."""
        logits, prompt_logits = self.runner.run(schedule)
        for seq, n in schedule.prefill:
            if seq.seq_id in prompt_logits:
                self._gather_prompt_logprobs(seq, prompt_logits[seq.seq_id], n)
        samples = self.sampler.sample(logits, schedule.sampled)
        return {seq.seq_id: sample for seq, sample in zip(schedule.sampled, samples, strict=True)}

    def _compute_alone(self, schedule: Schedule) -> tuple[dict[str, Sample], dict[str, str]]:
        """The batch failed: run each sequence's part alone, so a failure lands on the sequence that
        causes it. Rerunning is safe: nothing is counted before postprocess, so a sequence's keys and
        values are written again to the same slots, and a constraint consumes each token once.
        Returns the samples of those that ran and {seq_id: error} of those that failed."""
        samples: dict[str, Sample] = {}
        errors: dict[str, str] = {}
        for seq in schedule.seqs:
            try:
                samples.update(self._compute(schedule.only(seq)))
            except Exception as exc:
                errors[seq.seq_id] = f"{type(exc).__name__}: {exc}"
        return samples, errors

    def _gather_prompt_logprobs(self, seq: Sequence, chunk_logits: torch.Tensor, n: int) -> None:
        start = seq.num_cached  # the chunk's first position (postprocess has not counted it yet)
        k = seq.options.prompt_logprobs or 0
        if seq.seq_id not in self._prompt_logprobs:  # sent already: a preempted sequence prefills again
            return
        gathered = self._prompt_logprobs[seq.seq_id].by_position
        for i, item in enumerate(prompt_logprobs(chunk_logits, seq.prompt_ids, start, k)):
            gathered[start + i + 1] = item

    def _outputs(
        self, schedule: Schedule, kept: Schedule, samples: dict[str, Sample], errors: dict[str, str]
    ) -> list[StepOutput]:
        batch = len(schedule.seqs)
        self.stats.num_steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, batch)
        self.stats.tokens_generated += len(kept.sampled)
        for seq in schedule.seqs:
            seq.largest_batch = max(seq.largest_batch, batch)
        outputs = [self._output(seq, samples[seq.seq_id]) for seq in kept.sampled]
        outputs += [self._output(seq, None) for seq in kept.completed]
        outputs += [
            self._output(seq, None, errors[seq.seq_id]) for seq in schedule.seqs if seq.seq_id in errors
        ]
        return outputs

    def _output(self, seq: Sequence, sample: Sample | None, error: str | None = None) -> StepOutput:
        if seq.status.is_finished:
            del self.seqs[seq.seq_id]
        gathered = self._prompt_logprobs.pop(seq.seq_id, None)
        prompt = None
        if gathered is not None and error is None:
            rest = [gathered.by_position[p] for p in sorted(gathered.by_position)]
            prompt = [PromptLogprob(seq.prompt_ids[0], None, []), *rest]
        return StepOutput(
            seq_id=seq.seq_id,
            token_id=None if sample is None else sample.token_id,
            num_prompt_tokens=len(seq.prompt_ids),
            num_output_tokens=len(seq.output_ids),
            finish_reason=seq.status.finish_reason,
            largest_batch=seq.largest_batch,
            logprob=None if sample is None else sample.logprob,
            top_logprobs=None if sample is None else sample.top_logprobs,
            prompt_logprobs=prompt,
            error=error,
        )
