"""The launcher's crash-loop pauses: none after one death, then doubling to a cap."""

from __future__ import annotations

from workers.launcher import MAX_PAUSE_S, pause_after


def test_a_crash_loop_backs_off_and_is_capped() -> None:
    assert [pause_after(n) for n in range(6)] == [0.0, 0.0, 2.0, 4.0, 8.0, 16.0]
    assert pause_after(30) == MAX_PAUSE_S
