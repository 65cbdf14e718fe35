"""A request's timeline on a real Redis: steps come back in the order they happened."""

from __future__ import annotations

import time
import uuid

import redis

from shared import timeline


def test_a_step_written_late_is_read_back_at_the_time_it_happened(r: redis.Redis) -> None:
    rid = uuid.uuid4().hex
    t0 = time.time()
    timeline.record(r, rid, "claimed", 60, worker="w")
    # A worker writes what an engine step did once the step has run, stamped with when it happened: it
    # reaches Redis after steps that came later.
    timeline.record(r, rid, "requeued", 60, reason="handed back")
    timeline.record(r, rid, "admitted", 60, at=t0 - 1, worker="w", step=3)
    steps = timeline.read(r, rid)
    assert [s["kind"] for s in steps] == ["admitted", "claimed", "requeued"]
    assert steps[0] == {"kind": "admitted", "at": t0 - 1, "worker": "w", "step": 3}
    assert steps[1]["at"] >= t0
