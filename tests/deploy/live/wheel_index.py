"""The CPU torch wheel that lies on this machine's disk, served as a one-package index (PEP 503) on the
host's loopback, for the image build's TORCH_INDEX_URL. The build runs on the host's network, and pip
counts 127.0.0.0/8 as a secure origin, so plain HTTP needs no trusted-host setting.

The wheel is looked for where the host's pip looks (its find-links); without it the Dockerfile's default
index (download.pytorch.org/whl/cpu) is used.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import requests

from devtools.embedded_redis import free_port
from devtools.servers import Process, wait_for
from shared.settings import PROJECT_ROOT

PORT = 47613


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def torch_pin() -> str:
    pin = re.search(r'"torch==([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text())
    assert pin, "torch is pinned in pyproject.toml"
    return pin.group(1)


def find_cpu_wheel() -> Path | None:
    """torch-<pin>+cpu for this Python in one of pip's find-links directories, or None."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    dirs = [
        Path(d)
        for line in out.stdout.splitlines()
        if line.split("=", 1)[0].endswith("find-links")
        for d in line.split("=", 1)[1].strip("'\" ").split()
    ]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for directory in dirs:
        for wheel in sorted(directory.glob(f"torch-{torch_pin()}+cpu-{tag}-{tag}-*x86_64.whl")):
            return wheel
    return None


class WheelIndex:
    """python -m http.server over a directory holding simple/torch/<the wheel>; stop() ends it by pid."""

    def __init__(self, wheel: Path, work_dir: Path, log_dir: Path) -> None:
        package = work_dir / "simple" / "torch"
        package.mkdir(parents=True, exist_ok=True)
        if not (package / wheel.name).exists():
            shutil.copyfile(wheel, package / wheel.name)  # a copy: http.server serves only under its root
        (package / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
        # One port run after run where it is free: the URL is a build argument, part of the layer cache's key.
        self.port = PORT if is_free(PORT) else free_port()
        cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(work_dir),
               str(self.port)]  # fmt: skip
        self.process = Process("wheel-index", cmd, {}, log_dir)
        self.url = f"http://127.0.0.1:{self.port}/simple"

    def start(self) -> WheelIndex:
        wait_for(
            lambda: requests.get(f"{self.url}/torch/", timeout=2).ok, 30, "the wheel index", self.process
        )
        return self

    def stop(self) -> None:
        self.process.stop()
