"""The scheduler alone, with no model: decodes first, prefill within the budget, chunking, retirement."""

from __future__ import annotations

from tests.workers.engine.factories import EOS, make_scheduler, make_seqs
from workers.engine import SequenceStatus
from workers.engine.scheduler import Schedule, Scheduler


def step(scheduler: Scheduler, token: int = 50) -> Schedule:
    """One schedule plus postprocess, every sampled sequence getting `token`."""
    schedule = scheduler.schedule()
    scheduler.postprocess(schedule, [token] * len(schedule.sampled))
    return schedule


def test_prefill_admits_first_come_first_served_up_to_the_slots() -> None:
    scheduler = make_scheduler(max_batch=2, max_batch_tokens=64)
    seqs = make_seqs(3)
    for seq in seqs:
        scheduler.add(seq)
    schedule = scheduler.schedule()
    assert [s.seq_id for s, _ in schedule.prefill] == ["s0", "s1"]  # two slots
    assert [n for _, n in schedule.prefill] == [4, 4]
    assert schedule.sampled == seqs[:2] and not schedule.decode
    assert list(scheduler.waiting) == [seqs[2]]


def test_decodes_come_first_and_prefill_fills_what_is_left_in_chunks() -> None:
    scheduler = make_scheduler(max_batch=4, max_batch_tokens=6)
    short, long_ = make_seqs(1, prompt_len=3)[0], make_seqs(1, prompt_len=10, prefix="L")[0]
    scheduler.add(short)
    step(scheduler)  # short is prefilled and has its first token
    scheduler.add(long_)
    schedule = step(scheduler)
    assert schedule.decode == [short]
    assert schedule.prefill == [(long_, 5)]  # 6 tokens of budget, one went to the decode
    assert long_ not in schedule.sampled  # half a prompt: nothing to sample yet
    schedule = step(scheduler)
    assert schedule.prefill == [(long_, 5)] and long_ in schedule.sampled  # the rest of it
    assert long_.num_cached == 10 and long_.output_ids == [50]


def test_postprocess_counts_cached_tokens_and_retires_on_length_and_eos() -> None:
    scheduler = make_scheduler()
    a, b = make_seqs(2, max_new_tokens=2)
    scheduler.add(a)
    scheduler.add(b)
    step(scheduler)
    assert a.num_cached == 4 and a.output_ids == [50]
    schedule = scheduler.schedule()
    scheduler.postprocess(schedule, [EOS, 51])  # a samples EOS, b reaches max_new_tokens
    assert a.status is SequenceStatus.FINISHED_STOPPED
    assert b.status is SequenceStatus.FINISHED_LENGTH
    assert a.num_cached == 5 and scheduler.blocks.num_free == scheduler.blocks.num_blocks
    assert not scheduler.running


def test_ignore_eos_and_the_context_limit() -> None:
    scheduler = make_scheduler(max_model_len=7)
    [seq] = make_seqs(1, max_new_tokens=100, ignore_eos=True)
    scheduler.add(seq)
    step(scheduler, token=EOS)
    assert seq.status is SequenceStatus.RUNNING  # EOS ignored
    step(scheduler, token=EOS)
    step(scheduler, token=EOS)
    assert seq.num_tokens == 7 and seq.status is SequenceStatus.FINISHED_LENGTH


def test_finish_frees_the_blocks_of_a_waiting_or_running_sequence() -> None:
    scheduler = make_scheduler(max_batch=1)
    running, waiting = make_seqs(2)
    scheduler.add(running)
    scheduler.add(waiting)
    step(scheduler)
    assert running.block_table and not waiting.block_table
    scheduler.finish(waiting, SequenceStatus.FINISHED_ABORTED)
    assert not scheduler.waiting
    scheduler.finish(running, SequenceStatus.FINISHED_STOPPED)
    assert scheduler.blocks.num_free == scheduler.blocks.num_blocks and running.block_table == []
    assert not scheduler.has_work()


def test_a_group_with_nothing_running_gets_a_slot_at_once() -> None:
    scheduler = make_scheduler(max_batch=3, max_batch_tokens=64)
    flood = make_seqs(5, prefix="a")
    for seq in flood:
        seq.group = "a"
        scheduler.add(seq)
    step(scheduler)  # a0, a1, a2 run; a3, a4 wait
    [light] = make_seqs(1, prefix="b")
    light.group = "b"
    scheduler.add(light)
    schedule = step(scheduler)
    assert light in [s for s, _ in schedule.prefill]  # admitted in the very next step
    assert flood[2].status is SequenceStatus.WAITING and flood[2].num_preemptions == 1  # a's newest
    assert flood[2].num_cached == 0 and flood[2].output_ids == [50]  # keeps its token, recomputed later
    assert list(scheduler.waiting)[:1] == [flood[2]]  # first in line among a's


def test_a_free_slot_goes_to_the_group_running_the_fewest() -> None:
    scheduler = make_scheduler(max_batch=2, max_batch_tokens=64)
    [a0] = make_seqs(1, prefix="a0-", max_new_tokens=9)
    [a1] = make_seqs(1, prefix="a1-", max_new_tokens=1)
    [a2] = make_seqs(1, prefix="a2-")
    [b0] = make_seqs(1, prefix="b0-")
    for seq in (a0, a1, a2):
        seq.group = "a"
    b0.group = "b"
    scheduler.add(a0)
    scheduler.add(a1)
    step(scheduler)  # a0 and a1 run; a1 ends after its one token
    scheduler.add(a2)  # a2 came first...
    scheduler.add(b0)
    schedule = scheduler.schedule()
    assert [s for s, _ in schedule.prefill] == [b0]  # ...but a runs one and b none: b gets the slot
    assert a0.num_preemptions == 0  # a free slot was there: nobody was preempted


def test_one_group_alone_is_never_preempted_for_itself() -> None:
    scheduler = make_scheduler(max_batch=2, max_batch_tokens=64)
    for seq in make_seqs(4):
        scheduler.add(seq)
    for _ in range(3):
        step(scheduler)
    assert all(s.num_preemptions == 0 for s in scheduler.running + list(scheduler.waiting))
