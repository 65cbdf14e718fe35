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


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for `sig` when the parent exits; if it is already gone (we were orphaned before asking), send it
    to ourselves now."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), sig)
