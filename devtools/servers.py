"""Real servers for the tests: Redis, Celery workers and the API under gunicorn, each a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import requests

from devtools.embedded_redis import EmbeddedRedis, free_port
from shared import bus, fleet
from shared.settings import settings_from_env

VENV_BIN = Path(sys.executable).parent


class Process:
    """A child process with its log file; stop() ends it by its pid (TERM, then KILL)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.is_alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, proc: Process | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.is_alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.log_tail()}")
        try:
            if check():
                return
        except (requests.RequestException, redis.RedisError):
            pass
        time.sleep(0.2)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}\n{tail}")


def start_worker(
    env: dict[str, str], log_dir: Path, name: str = "worker", log_level: str = "warning"
) -> Process:
    """A Celery worker process on the env's MODEL, logging from log_level up; returns once its heartbeat
    is in Redis."""
    settings = settings_from_env(env)
    r = bus.connect(settings.redis_url, settings.redis_tls_verify)
    before = {w.worker_id for w in fleet.list_workers(r)}
    cmd = [
        str(VENV_BIN / "celery"),
        "-A",
        "workers.celery_app",
        "worker",
        "-l",
        log_level,
        "--hostname",
        f"{name}-{os.getpid()}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    proc = Process(name, cmd, env, log_dir)
    wait_for(
        lambda: any(w.pid == proc.pid for w in fleet.list_workers(r) if w.worker_id not in before),
        120,
        f"{name} heartbeat",
        proc,
    )
    return proc


def start_exporter(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    """The metrics exporter (monitoring/exporter.py) on a free loopback port; returns once it answers,
    with its /metrics URL."""
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "METRICS_PORT": str(port)}
    proc = Process(f"exporter-{port}", [sys.executable, "-m", "monitoring.exporter"], env, log_dir)
    url = f"http://127.0.0.1:{port}/metrics"
    headers = {"Authorization": f"Bearer {env['METRICS_TOKEN']}"} if env.get("METRICS_TOKEN") else {}
    wait_for(
        lambda: requests.get(url, headers=headers, timeout=2).status_code == 200, 30, "the exporter", proc
    )
    return proc, url


def start_api(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    """gunicorn serving the API on a free port; returns once it answers HTTP."""
    port = free_port()
    env = {**env, "PORT": str(port)}
    cmd = [str(VENV_BIN / "gunicorn"), "-c", "api/gunicorn_conf.py", "api.wsgi:app"]
    proc = Process(f"api-{port}", cmd, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/health", timeout=2).status_code in (200, 503), 60, "the API", proc)
    return proc, url


@contextmanager
def cluster_on_own_redis(
    env: dict[str, str], log_dir: Path, data_dir: Path, name: str
) -> Iterator[tuple[str, EmbeddedRedis]]:
    """A Redis of its own (appendonly, so it can be killed and restarted), a worker and an API on it:
    yields (the API's url, the Redis) and stops all three by their ids."""
    server = EmbeddedRedis(data_dir, appendonly=True).start()
    env = {**env, "REDIS_URL": server.url}
    worker = start_worker(env, log_dir, f"{name}-worker")
    try:
        api, url = start_api(env, log_dir)
        try:
            yield url, server
        finally:
            api.stop()
    finally:
        worker.stop()
        server.stop()
