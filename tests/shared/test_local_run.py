"""The checkout's `make run` lock: one holder at a time, found by others while held, nothing once released."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import local_run


def test_a_second_claim_finds_the_first_and_a_released_lock_counts_for_nothing(tmp_path: Path) -> None:
    lock = local_run.claim(tmp_path)
    assert local_run.running_instance(tmp_path) is None  # claimed, not yet published
    instance = local_run.Instance(1234, "redis://127.0.0.1:4321/0", "http://127.0.0.1:8000")
    local_run.publish(lock, instance)
    assert local_run.running_instance(tmp_path) == instance
    with pytest.raises(local_run.AlreadyRunning) as refused:
        local_run.claim(tmp_path)
    assert refused.value.instance == instance
    lock.close()  # the run ended (however: the lock goes with its process)
    assert local_run.running_instance(tmp_path) is None
    local_run.claim(tmp_path).close()
