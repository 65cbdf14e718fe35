"""Scale-out, proven: a worker on another host (its own network namespace, linked to this one by a veth
pair the test makes and removes) reaches Redis across the link, serves requests, and its death is
recovered like any other; a stream is followed and cancelled across two API processes; a worker whose
engine loop stops turning reads as unhealthy."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devtools.clients import indexed, read_sse, submit
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import VENV_BIN, Process, start_api, start_worker, wait_for
from shared.settings import PROJECT_ROOT
from tests.e2e.test_streams import read_first

HOST_IP, NS_IP = "169.254.77.1", "169.254.77.2"  # link-local: the two ends of the test's own veth pair


@dataclass
class Namespace:
    name: str
    host_link: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def other_host() -> Iterator[Namespace]:
    """A network namespace standing for a second host, with a veth link to this one."""
    tag = uuid.uuid4().hex[:6]
    ns = Namespace(f"tw-{tag}", f"twh{tag}")
    try:
        ip("netns", "add", ns.name)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(
            f"network namespaces cannot be made here ({exc}); the scale-out test needs root and iproute2"
        )
    try:
        ip("link", "add", ns.host_link, "type", "veth", "peer", "name", f"twn{tag}")
        ip("link", "set", f"twn{tag}", "netns", ns.name)
        ip("addr", "add", f"{HOST_IP}/30", "dev", ns.host_link)
        ip("link", "set", ns.host_link, "up")
        ip("netns", "exec", ns.name, "ip", "addr", "add", f"{NS_IP}/30", "dev", f"twn{tag}")
        ip("netns", "exec", ns.name, "ip", "link", "set", f"twn{tag}", "up")
        ip("netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", ns.host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)


def test_a_worker_on_another_host_serves_and_its_death_is_recovered(
    other_host: Namespace, server_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(
        tmp_path / "redis", bind=("127.0.0.1", HOST_IP), password="link-secret"
    ).start()
    env = {**server_env, "REDIS_URL": redis_server.url, "MAX_BATCH": "4", "DRAIN_TIMEOUT": "1"}
    remote_env = {**env, "REDIS_URL": redis_server.url_at(HOST_IP)}
    procs: list[Process] = []
    try:
        procs.append(start_worker(env, log_dir, "local"))
        api, url = start_api(env, log_dir)
        procs.append(api)
        remote = Process(
            "remote",
            ["ip", "netns", "exec", other_host.name, str(VENV_BIN / "celery"), "-A", "workers.celery_app",
             "worker", "-l", "warning", "--hostname", f"remote-{os.getpid()}@%h", "--without-mingle",
             "--without-gossip"],
            {**remote_env, "PYTHONPATH": str(PROJECT_ROOT)}, log_dir,
        )  # fmt: skip
        procs.append(remote)

        def pids() -> set[int]:
            return {w["pid"] for w in requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]}

        wait_for(lambda: remote.pid in pids(), 120, "the other host's worker in /v1/workers", remote)
        subs = [
            submit(url, prompt=f"far {i}", max_new_tokens=400, temperature=0, ignore_eos=True)
            for i in range(8)
        ]
        heads = [read_first(s["stream_url"], 2)[0] for s in subs]  # 4 slots each: both workers take some

        def served_by_remote() -> list[str]:
            owners = [
                requests.get(f"{url}/v1/requests/{s['id']}", timeout=5).json()["worker_id"] for s in subs
            ]
            return [s["id"] for s, w in zip(subs, owners, strict=True) if w and w.endswith(f"-{remote.pid}")]

        assert served_by_remote(), "the other host's worker took none of the requests"
        os.kill(remote.pid, signal.SIGKILL)
        for sub, head in zip(subs, heads, strict=True):
            events = head + indexed(read_sse(f"{sub['stream_url']}?from={head[-1].id}", timeout=120))
            assert [e.data["index"] for e in events] == list(range(len(events)))
            assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 400
    finally:
        for proc in procs:
            proc.stop()
        redis_server.stop()


def test_a_stream_is_followed_and_cancelled_across_two_api_processes(
    live_url: str, server_env: dict[str, str], log_dir: Path
) -> None:
    other, other_url = start_api({**server_env, "WEB_CONCURRENCY": "2"}, log_dir)  # two processes in one
    try:
        sub = submit(live_url, prompt="across", max_new_tokens=2000, temperature=0, ignore_eos=True)
        head, _ = read_first(sub["stream_url"], 4)
        more, _ = read_first(
            f"{other_url}/v1/requests/{sub['id']}/stream", 6, headers={"Last-Event-ID": head[-1].id}
        )
        assert requests.delete(f"{other_url}/v1/requests/{sub['id']}", timeout=5).status_code == 202
        rest = indexed(read_sse(f"{live_url}/v1/requests/{sub['id']}/stream?from={more[-1].id}", timeout=60))
        events = head + more + rest
        assert [e.data["index"] for e in events] == list(range(len(events)))
        assert events[-1].data["finish_reason"] == "cancelled"
    finally:
        other.stop()


def test_a_worker_whose_engine_loop_stops_reads_as_unhealthy(
    server_env: dict[str, str], log_dir: Path, tmp_path: Path
) -> None:
    alive_file = tmp_path / "engine-alive"
    env = {**server_env, "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/10",
           "WORKER_ALIVE_FILE": str(alive_file)}  # fmt: skip
    worker = start_worker(env, log_dir, "liveness")
    check = [str(VENV_BIN / "python"), "-m", "workers.liveness", "--stale-after", "3"]

    def healthy() -> bool:
        return (
            subprocess.run(check, env=env, cwd=PROJECT_ROOT, capture_output=True, timeout=60).returncode == 0
        )

    try:
        wait_for(healthy, 30, "a healthy worker")
        os.kill(worker.pid, signal.SIGSTOP)  # a hung engine: the process lives, nothing turns
        wait_for(lambda: not healthy(), 30, "the hang noticed")
        os.kill(worker.pid, signal.SIGCONT)
        wait_for(healthy, 30, "healthy again")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        worker.stop()
