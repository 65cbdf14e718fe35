"""Waiting and running queues: who gets prefilled, who decodes, who is retired. Never touches torch.

Every step has a token budget. Running decodes come first (one token each), so a long
prompt never stalls them; prefills fill what is left, in chunks when a prompt is longer
than the budget (chunked prefill). A sequence is sampled in the step that processes its
last uncached token.

Fair share between groups (API keys): a free slot goes to the waiting sequence whose group runs
the fewest, first come first served among equals. When every slot is taken and a group with
nothing running waits, the newest sequence of the group holding the most slots is preempted: it
goes back to the head of the queue, keeps its tokens, and is recomputed when it gets a slot again.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from workers.engine.sequence import Sequence, SequenceStatus
from workers.engine.slots import SlotAllocator


@dataclass
class Schedule:
    decode: list[Sequence]  # one token each: their last sampled token
    prefill: list[tuple[Sequence, int]]  # a chunk of uncached tokens each: (sequence, chunk length)
    sampled: list[Sequence]  # who gets a new token this step: all decodes and the prefills that complete

    @property
    def seqs(self) -> list[Sequence]:
        """Everyone taking part in the step, in the packed row's order."""
        return self.decode + [seq for seq, _ in self.prefill]


class Scheduler:
    def __init__(
        self, max_batch: int, max_model_len: int, eos_token_ids: set[int], max_batch_tokens: int
    ) -> None:
        self.max_model_len = max_model_len
        self.max_batch_tokens = max_batch_tokens
        self.eos_token_ids = eos_token_ids
        self.slots = SlotAllocator(max_batch)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._admissions = 0  # counts slot grants: Sequence.admitted_at
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Schedule:
        """Decode every running sequence, then prefill (fairly, see the module) within the budget."""
        self._make_room_for_a_newcomer()
        decode: list[Sequence] = []
        partial: list[Sequence] = []
        for seq in self.running:
            (decode if seq.num_tokens - seq.num_cached == 1 else partial).append(seq)
        budget = self.max_batch_tokens - len(decode)
        prefill: list[tuple[Sequence, int]] = []
        for seq in partial:  # prompts whose earlier chunks already ran
            if budget <= 0:
                break
            n = min(seq.num_tokens - seq.num_cached, budget)
            prefill.append((seq, n))
            budget -= n
        while budget > 0 and self.waiting and self.slots.can_allocate():
            seq = self._next_waiting()
            self.waiting.remove(seq)
            seq.slot = self.slots.allocate()
            seq.status = SequenceStatus.RUNNING
            self._admissions += 1
            seq.admitted_at = self._admissions
            self.running.append(seq)
            n = min(seq.num_tokens, budget)
            prefill.append((seq, n))
            budget -= n
        decode.sort(key=lambda s: s.slot if s.slot is not None else -1)  # contiguous slots read in place
        sampled = decode + [seq for seq, n in prefill if seq.num_cached + n == seq.num_tokens]
        return Schedule(decode=decode, prefill=prefill, sampled=sampled)

    def _next_waiting(self) -> Sequence:
        """The waiting sequence whose group runs the fewest; the earliest among equals."""
        running = Counter(s.group for s in self.running)
        return min(self.waiting, key=lambda s: running[s.group])

    def _make_room_for_a_newcomer(self) -> None:
        """Every slot taken, and a group with nothing running waits: preempt the newest sequence of the
        group that holds the most slots (if it holds two or more)."""
        if self.slots.can_allocate() or not self.waiting:
            return
        running = Counter(s.group for s in self.running)
        if all(running[s.group] for s in self.waiting):
            return
        group, held = running.most_common(1)[0]
        if held >= 2:
            self.preempt(max((s for s in self.running if s.group == group), key=lambda s: s.admitted_at))

    def preempt(self, seq: Sequence) -> None:
        """Take a running sequence's slot back; it waits at the head of the queue with its tokens and is
        recomputed (prompt and output prefilled again) when it gets a slot."""
        self.running.remove(seq)
        if seq.slot is not None:
            self.slots.free(seq.slot)
            seq.slot = None
        seq.num_cached = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(self, schedule: Schedule, token_ids: list[int]) -> None:
        """Count the tokens the step cached, append each sampled token, and retire the sequences that
        reached a stop condition."""
        for seq in schedule.decode:
            seq.num_cached += 1
        for seq, n in schedule.prefill:
            seq.num_cached += n
        for seq, token_id in zip(schedule.sampled, token_ids, strict=True):
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
