"""Admission on a real Redis: one owner's flood never fills the queue against another owner."""

from __future__ import annotations

import time
import uuid

import redis

from shared import admission, bus
from shared.messages import GenerationRequest, SamplingParams


def requests_of(owner: str, model: str, n: int) -> list[GenerationRequest]:
    now = time.time()
    return [
        GenerationRequest(request_id=uuid.uuid4().hex, model=model, prompt="p", params=SamplingParams(),
                          created_at=now, owner=owner)
        for _ in range(n)
    ]  # fmt: skip


def admit_one_by_one(r: redis.Redis, owner: str, model: str, tries: int) -> int:
    """How many of `tries` single submissions the queue took (MAX_QUEUED 40)."""
    return sum(
        isinstance(admission.admit(r, requests_of(owner, model, 1), 60, 40), list) for _ in range(tries)
    )


def test_a_flood_leaves_room_for_newcomers_then_shares_the_queue(r: redis.Redis) -> None:
    model = f"m-{uuid.uuid4().hex}"
    alice = admit_one_by_one(r, "alice", model, 50)
    assert alice == 35  # alone: 7/8 of the queue; the last 5 places are kept for keys with nothing waiting
    bob = admit_one_by_one(r, "bob", model, 10)
    assert bob == 1  # in at once; more only as places free up, Alice holding far past her share now
    assert admit_one_by_one(r, "carol", model, 1) == 1  # one more newcomer still gets in
    refusal = admission.admit(r, requests_of("alice", model, 1), 60, max_queued=40)
    assert refusal == admission.Refusal("share", 11)  # 35 places among 3 keys waiting
    assert bus.num_waiting(r, model) == 37


def test_a_list_past_the_share_is_refused_whole(r: redis.Redis) -> None:
    model = f"m-{uuid.uuid4().hex}"
    assert isinstance(admission.admit(r, requests_of("alice", model, 4), 60, max_queued=40), list)
    refusal = admission.admit(r, requests_of("bob", model, 20), 60, max_queued=40)
    assert refusal == admission.Refusal("share", 17)  # (40 - 5) // 2 with Alice waiting
    assert bus.num_waiting(r, model) == 4
    assert isinstance(admission.admit(r, requests_of("bob", model, 17), 60, max_queued=40), list)
    assert bus.num_waiting(r, model) == 21
