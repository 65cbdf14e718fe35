"""The reaper on a real Redis: a lost worker's request goes back in line, its timeline saying so first."""

from __future__ import annotations

import redis

from shared import bus, lifecycle, timeline
from shared.messages import GenerationRequest
from shared.settings import Settings
from tests.shared.test_lifecycle import queued, run_out
from workers import recovery


def test_the_requeue_is_on_the_timeline_before_the_task_goes_out(redis_url: str) -> None:
    # The shared/ tests' database: no worker lives there, so no other reaper takes the lease first.
    r: redis.Redis = bus.connect(redis_url.rsplit("/", 1)[0] + "/5")
    req = queued(r)
    assert lifecycle.claim(r, req, "w-lost", lease_s=60)
    run_out(r, req)
    seen: dict[str, list[str]] = {}

    def enqueue(request: GenerationRequest) -> None:
        # The next worker may claim the moment the task is out: by then the timeline must say "requeued",
        # or its "claimed" lands first and the page lists the hand-off out of order.
        seen[request.request_id] = [step["kind"] for step in timeline.read(r, request.request_id)]

    handled = recovery.reap(r, Settings(max_attempts=3, stream_ttl_s=60), enqueue)
    assert req.request_id in handled
    assert seen[req.request_id] == ["requeued"]
    [step] = timeline.read(r, req.request_id)
    assert step["reason"] == "its worker stopped" and step["worker"] == "w-lost"
