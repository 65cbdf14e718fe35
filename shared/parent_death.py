"""Tie a process's life to its parent's: when the parent dies, however it dies (SIGKILL included), Linux
sends this process a signal of our choosing (prctl PR_SET_PDEATHSIG). Elsewhere it does nothing.

`make run` chains it (make -> scripts/serve.py -> supervisord -> each program), so that no process it
started outlives it; supervisord's programs get it through `setpriv --pdeathsig` in their command.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Ask for `sig` when the parent exits. `parent` is the pid the caller knows its parent by (a forked
    child: the pid before the fork); if the parent is no longer it (it died before we asked), send `sig`
    to ourselves now. A parent of pid 1 is no sign of an orphan: in a container the launcher is pid 1."""
    if not sys.platform.startswith("linux"):
        return
    expected = os.getppid() if parent is None else parent
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != expected:
        os.kill(os.getpid(), sig)
