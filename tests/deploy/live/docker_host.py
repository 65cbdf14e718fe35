"""A Docker engine of the test's own: Debian's dockerd on its own socket, data root and exec root, with no
default bridge and no iptables, so it touches nothing of the machine's networking. Compose networks sit on
link-local addresses (169.254.200.0/21) inside the machine. Stopped by its pid, after every container on it.

The data root lives under .cache/deploy/docker and is kept between runs: the stand-in base images and the
build's layers need not be made again each time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client, the same release as the engine (not a newer one on PATH)
COMPOSE = "/usr/bin/docker-compose"


def is_installed() -> bool:
    return all(Path(p).exists() for p in (DOCKERD, DOCKER, COMPOSE))


class DockerHost:
    """dockerd as a child process; run `docker` and `docker-compose` against it."""

    def __init__(self, data_root: Path, log_dir: Path) -> None:
        self.data_root = data_root
        # A short exec root: containerd's unix sockets live under it, and a socket path is at most 107 bytes.
        self.run_dir = Path(tempfile.mkdtemp(prefix="twdock-"))
        self.socket = self.run_dir / "docker.sock"
        self.log_path = log_dir / "dockerd.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for docker and docker-compose: our socket, never the machine's."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "COMPOSE_DOCKER_CLI_BUILD": "0"}

    def start(self, timeout_s: float = 60) -> DockerHost:
        self.data_root.mkdir(parents=True, exist_ok=True)
        cmd = [
            DOCKERD, "--host", f"unix://{self.socket}", "--data-root", str(self.data_root),
            "--exec-root", str(self.run_dir / "exec"), "--pidfile", str(self.run_dir / "docker.pid"),
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--default-address-pool", "base=169.254.200.0/21,size=24",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.popen.returncode}): see {self.log_path}")
            if self.socket.exists() and self.docker("version", check=False).returncode == 0:
                self.remove_containers()  # left by a run that was killed before its clean-up
                return self
            time.sleep(0.5)
        raise TimeoutError(f"dockerd did not answer within {timeout_s} s: see {self.log_path}")

    def docker(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and out.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
            )
        return out

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.docker("inspect", container).stdout)
        return found[0]

    def has_image(self, tag: str) -> bool:
        return self.docker("image", "inspect", tag, check=False).returncode == 0

    def remove_containers(self) -> None:
        """Every container on this engine: all of them are the tests'."""
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=120)

    def stop(self, timeout_s: float = 60) -> None:
        """Remove every container on this engine (they are all ours), then stop dockerd by its pid, and its
        containerd with it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.remove_containers()
            # The data root is kept as a cache: keep the tagged images, drop earlier builds' layers.
            self.docker("image", "prune", "-f", check=False, timeout=300)
        containerd = self._containerd_pid()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        if containerd is not None and _name_of(containerd) == "containerd":  # dockerd stops it; make sure
            _end(containerd, timeout_s=15)
        # dockerd leaves its default network namespace mounted under the exec root.
        for mount in reversed(_mounts_under(self.run_dir)):
            subprocess.run(["umount", mount], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _containerd_pid(self) -> int | None:
        pid_file = self.run_dir / "exec" / "containerd" / "containerd.pid"
        try:
            return int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def _mounts_under(directory: Path) -> list[str]:
    lines = Path("/proc/mounts").read_text().splitlines()
    return [m for line in lines if (m := line.split()[1]).startswith(f"{directory}/")]


def _name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _end(pid: int, timeout_s: float) -> None:
    """TERM a process by its pid, then KILL it if it outlives timeout_s."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
