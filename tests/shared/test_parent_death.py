"""die_with_parent on Linux: a child lives while its parent does, even when the parent is pid 1 (the
worker launcher in a container), and gets its signal when the parent dies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")

# A parent that forks a child tied to it, as workers/launcher.py does; the child says it is alive.
FORK_ONE = textwrap.dedent(
    """
    import os, signal, sys
    from shared.parent_death import die_with_parent
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        die_with_parent(signal.SIGKILL, parent=parent)
        print(f"alive under {os.getppid()}", flush=True)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_child_of_pid_1_lives() -> None:
    """In a new pid namespace the parent is pid 1, as a container's main process is."""
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", FORK_ONE],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive under 1"


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """The parent leaves without stopping its child: the kernel sends the child its signal."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from shared.parent_death import die_with_parent
        parent = os.getpid()
        child = os.fork()
        if child == 0:
            die_with_parent(signal.SIGKILL, parent=parent)
            time.sleep(120)
            os._exit(0)
        open({str(pid_file)!r}, "w").write(str(child))
        os._exit(0)
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, cwd=Path(__file__).resolve().parents[2]
    )
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and is_alive(child):
        time.sleep(0.1)
    if is_alive(child):
        os.kill(child, 9)  # do not leave it behind
        pytest.fail("the child outlived its parent")


def is_alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
