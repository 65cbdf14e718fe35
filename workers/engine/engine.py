"""The engine: add requests at any time, call step() in a loop, read what each step produced.

Each step decodes every running sequence by one token and prefills newly admitted ones
(in chunks, within a token budget), all in one packed forward pass over the slot KV cache;
then it samples the whole batch at once and retires the finished. Sequences join and
leave between steps (continuous batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from workers.engine.model_runner import ModelRunner
from workers.engine.sampler import Sample, Sampler
from workers.engine.scheduler import Schedule, Scheduler
from workers.engine.sequence import SamplingOptions, Sequence, SequenceStatus


@dataclass(frozen=True)
class StepOutput:
    """One new token of one sequence, and whether that sequence is now finished."""

    seq_id: str
    token_id: int
    num_prompt_tokens: int
    num_output_tokens: int
    finish_reason: str | None  # None while the sequence runs on
    largest_batch: int
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


@dataclass
class EngineStats:
    num_steps: int = 0
    largest_batch: int = 0
    tokens_generated: int = 0


class LLMEngine:
    def __init__(
        self,
        model: Any,
        max_batch: int,
        max_model_len: int,
        eos_token_ids: set[int],
        max_batch_tokens: int,
    ) -> None:
        """`max_batch_tokens` caps the tokens one step runs; it is raised to max_batch if lower."""
        self.max_batch = max_batch
        self.max_model_len = max_model_len
        self.runner = ModelRunner(model, max_batch, max_model_len)
        self.sampler = Sampler(self.runner.device, eos_token_ids)
        self.scheduler = Scheduler(max_batch, max_model_len, eos_token_ids, max(max_batch_tokens, max_batch))
        self.seqs: dict[str, Sequence] = {}
        self.stats = EngineStats()

    @property
    def num_free_slots(self) -> int:
        return self.scheduler.slots.num_free

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
        seq = Sequence(seq_id, list(prompt_ids), options, output_ids=list(output_ids or []), group=group)
        self.seqs[seq_id] = seq
        self.scheduler.add(seq)

    def finish(self, seq_id: str, status: SequenceStatus) -> bool:
        """End a sequence now with a finished status, freeing its slot; False if it is unknown."""
        seq = self.seqs.pop(seq_id, None)
        if seq is None:
            return False
        self.scheduler.finish(seq, status)
        return True

    def abort(self, seq_id: str) -> bool:
        """Remove a sequence now (cancelled, timed out, handed back); False if it is unknown."""
        return self.finish(seq_id, SequenceStatus.FINISHED_ABORTED)

    @property
    def kv_cache_bytes(self) -> int:
        return self.runner.kv.num_bytes

    @torch.inference_mode()
    def step(self) -> list[StepOutput]:
        """Run one scheduling step; returns one output per sequence that sampled a token in it."""
        schedule = self.scheduler.schedule()
        if not schedule.seqs:
            return []
        logits = self.runner.run(schedule)
        samples = self.sampler.sample(logits, schedule.sampled)
        self.scheduler.postprocess(schedule, [s.token_id for s in samples])
        return self._outputs(schedule, samples)

    def _outputs(self, schedule: Schedule, samples: list[Sample]) -> list[StepOutput]:
        batch = len(schedule.seqs)
        self.stats.num_steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, batch)
        self.stats.tokens_generated += len(samples)
        for seq in schedule.seqs:
            seq.largest_batch = max(seq.largest_batch, batch)
        outputs = []
        for seq, sample in zip(schedule.sampled, samples, strict=True):
            if seq.status.is_finished:
                del self.seqs[seq.seq_id]
            outputs.append(
                StepOutput(
                    seq_id=seq.seq_id,
                    token_id=sample.token_id,
                    num_prompt_tokens=len(seq.prompt_ids),
                    num_output_tokens=len(seq.output_ids),
                    finish_reason=seq.status.finish_reason,
                    largest_batch=seq.largest_batch,
                    logprob=sample.logprob,
                    top_logprobs=sample.top_logprobs,
                )
            )
        return outputs
