"""Run a Celery worker in a child process and start another the moment it dies: `python -m workers.launcher`.

Importing torch and transformers takes a fresh worker process about 6 s on 2 cores, most of a
restart. The launcher imports them once, then forks each worker from that warm state, so a worker
killed by SIGKILL or the OOM killer is serving again in about 2 s. A worker that keeps dying soon
after it starts is started again after a growing pause (2, 4, 8 ... 60 s), and each death is logged
with how it ended. SIGTERM or SIGINT reaches the worker (it drains) and then ends the launcher.

Arguments are `celery worker`'s; each child gets its own node name, worker-<pid>@<host>.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from types import FrameType

# Imported here, before any fork, so that every worker starts from them already loaded.
import workers.control
import workers.tasks  # noqa: F401 - torch, transformers and the engine come with it
from shared import logs
from shared.parent_death import die_with_parent
from shared.settings import get_settings
from workers.celery_app import app

log = logging.getLogger("workers.launcher")
QUICK_DEATH_S = 20.0  # a worker that dies sooner than this after starting counts toward a crash loop
MAX_PAUSE_S = 60.0


def pause_after(quick_deaths: int) -> float:
    """Seconds to wait before the next start, after this many deaths in a row soon after starting: none
    for the first, then 2, 4, 8 ... up to MAX_PAUSE_S."""
    return 0.0 if quick_deaths <= 1 else min(MAX_PAUSE_S, 2.0 ** (quick_deaths - 1))


class Launcher:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.child: int | None = None
        self.stopping = False
        self.quick_deaths = 0

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        while not self.stopping:
            started = time.monotonic()
            self.child = self._fork_worker()
            status = self._wait(self.child)
            if self.stopping:
                break
            self._pause_after(status, time.monotonic() - started)
        return 0

    def _fork_worker(self) -> int:
        launcher = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            # The launcher stops its worker before it leaves; if it dies without doing so, so does the worker
            # (its requests come back through their expired leases), rather than serving on as an orphan.
            die_with_parent(signal.SIGKILL, parent=launcher)
            node = f"worker-{os.getpid()}@{socket.gethostname()}"
            try:
                app.worker_main(["worker", *self.argv, f"--hostname={node}"])
            finally:
                os._exit(0)
        log.warning("started worker %d", pid)
        return pid

    def _wait(self, pid: int) -> int:
        while True:
            try:
                return os.waitpid(pid, 0)[1]
            except InterruptedError:
                continue

    def _pause_after(self, status: int, ran_s: float) -> None:
        if os.WIFSIGNALED(status):
            how = f"killed by signal {os.WTERMSIG(status)}"
        else:
            how = f"exit {os.WEXITSTATUS(status)}"
        self.quick_deaths = self.quick_deaths + 1 if ran_s < QUICK_DEATH_S else 0
        pause = pause_after(self.quick_deaths)
        log.warning(
            "worker %s ended (%s) after %.1f s; %s", self.child, how, ran_s,
            f"it keeps dying soon after it starts ({self.quick_deaths} times): next start in {pause:.0f} s"
            if pause else "starting another now",
        )  # fmt: skip
        deadline = time.monotonic() + pause
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.2)

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        """Stop for good: the worker gets the signal (SIGTERM: it drains), and no other is started."""
        self.stopping = True
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, sig)


def main() -> int:
    logs.configure(get_settings().log_format)
    return Launcher(sys.argv[1:]).run()


if __name__ == "__main__":
    code = main()
    # The worker has ended and the launcher holds nothing to clean up. The interpreter's own teardown of
    # what it imported (torch, transformers) took 8 to 13 s of a 2-core machine, most of an idle Ctrl-C.
    logging.shutdown()
    os._exit(code)
