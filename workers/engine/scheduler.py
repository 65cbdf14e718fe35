"""Waiting and running queues over the paged KV cache: who is admitted, prefilled, decoded, preempted and
retired. Never touches torch.

Every step has a token budget. Running decodes come first (one token each), so a long prompt never
stalls them; prefills fill what is left, in chunks when a prompt is longer than the budget
(chunked prefill). A sequence is sampled in the step that processes its last uncached token.

Admission goes by free blocks: a waiting sequence is admitted when its whole context fits, its
cached prefix shared (prefix caching), and at most max_batch sequences run. When a decode needs
a new block and none is free, the newest running sequence is preempted (as vLLM v1 does): it
gives its blocks back, keeps its tokens, and is recomputed when it is admitted again, mostly from
the blocks it left in the cache.

Fair share between groups (API keys): a free place goes to the waiting sequence whose group runs
the fewest, first come first served among equals. When every place is taken and a group with
nothing running waits, the newest sequence of the group holding the most places is preempted.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from workers.engine.block_manager import BlockManager
from workers.engine.sequence import Sequence, SequenceStatus


@dataclass
class Schedule:
    decode: list[Sequence]  # one token each: their last sampled token
    prefill: list[tuple[Sequence, int]]  # a chunk of uncached tokens each: (sequence, chunk length)
    sampled: list[Sequence]  # who gets a new token this step: all decodes and the prefills that complete
    completed: list[Sequence] = field(default_factory=list)  # prompt done, zero new tokens asked: they end

    @property
    def seqs(self) -> list[Sequence]:
        """Everyone taking part in the step, in the packed row's order."""
        return self.decode + [seq for seq, _ in self.prefill]

    def without(self, seq_ids: set[str]) -> Schedule:
        """The same step less the given sequences (those that failed in it)."""
        return Schedule(
            decode=[s for s in self.decode if s.seq_id not in seq_ids],
            prefill=[(s, n) for s, n in self.prefill if s.seq_id not in seq_ids],
            sampled=[s for s in self.sampled if s.seq_id not in seq_ids],
            completed=[s for s in self.completed if s.seq_id not in seq_ids],
        )

    def only(self, seq: Sequence) -> Schedule:
        """The part of the step that is this one sequence's (to run it alone)."""
        return self.without({s.seq_id for s in self.seqs if s is not seq})


class Scheduler:
    def __init__(
        self,
        max_batch: int,
        max_model_len: int,
        eos_token_ids: set[int],
        max_batch_tokens: int,
        blocks: BlockManager,
    ) -> None:
        self.max_batch = max_batch
        self.max_model_len = max_model_len
        self.max_batch_tokens = max_batch_tokens
        self.eos_token_ids = eos_token_ids
        self.blocks = blocks
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._admissions = 0  # counts admissions: Sequence.admitted_at
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Schedule:
        """Decode every running sequence (preempting the newest when blocks run out), then prefill
        (fairly, see the module) within the token budget."""
        self._make_room_for_a_newcomer()
        decode = self._grow_decodes([s for s in self.running if s.num_tokens - s.num_cached == 1])
        budget = self.max_batch_tokens - len(decode)
        prefill: list[tuple[Sequence, int]] = []
        for seq in [s for s in self.running if s.num_tokens - s.num_cached > 1]:  # earlier chunks ran
            if budget <= 0:
                break
            n = min(seq.num_tokens - seq.num_cached, budget)
            prefill.append((seq, n))
            budget -= n
        while budget > 0 and self.waiting and len(self.running) < self.max_batch:
            seq = self._next_waiting()
            if not self.blocks.can_allocate(seq):
                break  # it waits for blocks to free; so does everyone behind it (no overtaking)
            self._admit(seq)
            n = min(seq.num_tokens - seq.num_cached, budget)
            prefill.append((seq, n))
            budget -= n
        done = [seq for seq, n in prefill if seq.num_cached + n == seq.num_tokens]
        sampled = decode + [seq for seq in done if seq.options.max_new_tokens > len(seq.output_ids)]
        completed = [seq for seq in done if seq.options.max_new_tokens <= len(seq.output_ids)]
        return Schedule(decode=decode, prefill=prefill, sampled=sampled, completed=completed)

    def _grow_decodes(self, decode: list[Sequence]) -> list[Sequence]:
        """Give each decode room for its next key and value, oldest first; when blocks run out,
        preempt the newest running sequence (possibly the one asking)."""
        kept = []
        for seq in sorted(decode, key=lambda s: s.admitted_at):
            while seq.status is SequenceStatus.RUNNING and not self.blocks.can_append(seq):
                self.preempt(max(self.running, key=lambda s: s.admitted_at))
            if seq.status is SequenceStatus.RUNNING:
                self.blocks.append_slot(seq)
                kept.append(seq)
        return kept

    def _admit(self, seq: Sequence) -> None:
        self.waiting.remove(seq)
        seq.num_cached = self.blocks.allocate(seq)
        seq.status = SequenceStatus.RUNNING
        self._admissions += 1
        seq.admitted_at = self._admissions
        self.running.append(seq)

    def _next_waiting(self) -> Sequence:
        """The waiting sequence whose group runs the fewest; the earliest among equals."""
        running = Counter(s.group for s in self.running)
        return min(self.waiting, key=lambda s: running[s.group])

    def _make_room_for_a_newcomer(self) -> None:
        """Every place taken, and a group with nothing running waits: preempt the newest sequence of the
        group that holds the most places (if it holds two or more)."""
        if len(self.running) < self.max_batch or not self.waiting:
            return
        running = Counter(s.group for s in self.running)
        if all(running[s.group] for s in self.waiting):
            return
        group, held = running.most_common(1)[0]
        if held >= 2:
            self.preempt(max((s for s in self.running if s.group == group), key=lambda s: s.admitted_at))

    def preempt(self, seq: Sequence) -> None:
        """Take a running sequence's blocks back; it waits at the head of the queue with its tokens and
        is recomputed (prompt and output prefilled again, its cached prefix shared) when admitted."""
        self.running.remove(seq)
        self.blocks.deallocate(seq)
        seq.num_cached = 0
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def postprocess(self, schedule: Schedule, token_ids: list[int]) -> None:
        """Count the tokens the step cached (registering full blocks for sharing), append each sampled
        token, and retire the sequences that reached a stop condition."""
        for seq in schedule.decode:
            seq.num_cached += 1
        for seq, n in schedule.prefill:
            seq.num_cached += n
        for seq in schedule.seqs:
            self.blocks.register_computed(seq)
        for seq in schedule.completed:
            self.finish(seq, SequenceStatus.FINISHED_LENGTH)
        for seq, token_id in zip(schedule.sampled, token_ids, strict=True):
            seq.output_ids.append(token_id)
            if token_id in self.eos_token_ids and not seq.options.ignore_eos:
                self.finish(seq, SequenceStatus.FINISHED_STOPPED)
            elif len(seq.output_ids) >= seq.options.max_new_tokens or seq.num_tokens >= self.max_model_len:
                self.finish(seq, SequenceStatus.FINISHED_LENGTH)

    def finish(self, seq: Sequence, status: SequenceStatus) -> None:
        """Retire a sequence: it leaves its queue and its blocks are released."""
        if seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        elif seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        self.blocks.deallocate(seq)
        seq.status = status
