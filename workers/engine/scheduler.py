"""Waiting and running queues: who gets prefilled, who decodes, who is retired. Never touches torch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from workers.engine.sequence import Sequence, SequenceStatus
from workers.engine.slots import SlotAllocator


@dataclass
class Schedule:
    prefill: list[Sequence]  # admitted this step: their prompts go through the model
    decode: list[Sequence]  # already running: one token each

    @property
    def seqs(self) -> list[Sequence]:
        return self.prefill + self.decode


class Scheduler:
    def __init__(self, max_batch: int, max_model_len: int, eos_token_ids: set[int]) -> None:
        self.max_model_len = max_model_len
        self.eos_token_ids = eos_token_ids
        self.slots = SlotAllocator(max_batch)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Schedule:
        """Admit waiting sequences into free slots (first come, first served); everyone running decodes."""
        decode = list(self.running)
        prefill: list[Sequence] = []
        while self.waiting and self.slots.can_allocate():
            seq = self.waiting.popleft()
            seq.slot = self.slots.allocate()
            seq.status = SequenceStatus.RUNNING
            prefill.append(seq)
        self.running.extend(prefill)
        return Schedule(prefill=prefill, decode=decode)

    def postprocess(self, seqs: list[Sequence], token_ids: list[int]) -> None:
        """Append each sampled token and retire the sequences that reached a stop condition."""
        for seq, token_id in zip(seqs, token_ids, strict=True):
            seq.output_ids.append(token_id)
            if token_id in self.eos_token_ids and not seq.options.ignore_eos:
                self.finish(seq, SequenceStatus.FINISHED_STOPPED)
            elif len(seq.output_ids) >= seq.options.max_new_tokens or seq.num_tokens >= self.max_model_len:
                self.finish(seq, SequenceStatus.FINISHED_LENGTH)

    def finish(self, seq: Sequence, status: SequenceStatus) -> None:
        """Retire a sequence: it leaves its queue and its slot is free for the next step."""
        if seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        elif seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        if seq.slot is not None:
            self.slots.free(seq.slot)
            seq.slot = None
        seq.status = status
