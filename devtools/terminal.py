"""Run a command as a terminal does: on a pseudo-terminal of its own, as the leader of its own session,
so that Ctrl-C (the byte 0x03 typed into the terminal) reaches its whole foreground process group.

The tests of `make run` drive it through this, never by signalling one pid: that is how a user stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path

CTRL_C = b"\x03"


def _take_terminal() -> None:
    """In the child, after setsid: make the pty on stdin this session's controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A command on its own pty and session; everything it prints goes to `log_path` (and `output`)."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._out = bytearray()
        self._lock = threading.Lock()
        master, slave = os.openpty()
        self._master = master
        self.popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=_take_terminal,
        )  # fmt: skip
        os.close(slave)
        self.session = self.popen.pid  # the session leader's pid is the session id
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log_path, "ab") as log:
            while True:
                try:
                    chunk = os.read(self._master, 65536)
                except OSError:  # EIO: every process holding the pty has closed it
                    return
                if not chunk:
                    return
                log.write(chunk)
                log.flush()
                with self._lock:
                    self._out += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace").replace("\r\n", "\n")

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        """Return once `text` was printed; TimeoutError (with the last lines) otherwise."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output:
            if time.monotonic() > deadline:
                tail = "\n".join(self.output.splitlines()[-40:])
                raise TimeoutError(f"{text!r} not printed within {timeout_s}s; last lines:\n{tail}")
            if self.popen.poll() is not None and text not in self.output:
                time.sleep(0.3)  # the reader may still hold its last chunk
                if text in self.output:
                    return
                tail = "\n".join(self.output.splitlines()[-40:])
                raise RuntimeError(f"exited {self.popen.returncode} before printing {text!r}:\n{tail}")
            time.sleep(0.1)

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal sends SIGINT to its foreground process group."""
        os.write(self._master, CTRL_C)

    def wait(self, timeout_s: float) -> int:
        return self.popen.wait(timeout=timeout_s)

    def close(self) -> None:
        """Kill whatever of the session is left (by its process groups) and close the pty."""
        for pid in session_pids(self.session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self._master)


def session_pids(session: int) -> list[int]:
    """Every live process of a session (zombies excluded): all that a command on a terminal started,
    whatever process group it moved to, unless it left the session."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            pids.append(int(stat.parent.name))
    return pids
