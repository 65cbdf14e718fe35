"""A cluster of its own for the attack tests: one worker with room for 24 streams and an API with tight
limits, on a Redis database no other test uses. Every attack goes to loopback only."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from devtools.clients import iter_sse, submit
from devtools.servers import Process, start_api, start_worker, wait_for


@dataclass
class Cluster:
    url: str
    api: Process
    worker: Process
    env: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="package")
def adv(server_env: dict[str, str], log_dir: Path) -> Iterator[Cluster]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/6",
        "MAX_BATCH": "24",
        "MAX_BATCH_TOKENS": "256",
        "MAX_QUEUED": "40",
        "MAX_CONNECTIONS_PER_CLIENT": "32",
        "BODY_TIMEOUT": "2",
        "FAILED_LOAD_TTL": "2",
        "ENABLE_NOBATCH": "0",
    }
    worker = start_worker(env, log_dir, "adv-worker")
    api, url = start_api(env, log_dir)
    wait_for(lambda: requests.get(f"{url}/health", timeout=2).status_code == 200, 60, "adv health")
    yield Cluster(url, api, worker, env)
    api.stop()
    worker.stop()


@dataclass
class Victim:
    """A stream followed in a thread, with the arrival time of each token event."""

    stream_url: str
    times: list[float] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    last: str = ""

    def follow(self) -> None:
        with requests.get(self.stream_url, stream=True, timeout=120) as resp:
            for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
                if event.id is None:
                    continue
                self.times.append(time.monotonic())
                self.indexes.append(int(event.id))
                self.last = event.event
                if event.event != "token":
                    return

    def largest_gap(self, since: float, until: float) -> float:
        """The longest wait between token events inside [since, until]."""
        inside = [t for t in self.times if since <= t <= until]
        return max((b - a for a, b in itertools.pairwise(inside)), default=0.0)


def start_victims(url: str, n: int, max_new_tokens: int) -> tuple[list[Victim], list[threading.Thread]]:
    """n long greedy requests past EOS, each followed in its own thread."""
    victims = []
    for i in range(n):
        sub = submit(url, prompt=f"victim {i}", max_new_tokens=max_new_tokens, temperature=0, ignore_eos=True)
        victims.append(Victim(sub["stream_url"]))
    threads = [threading.Thread(target=v.follow, daemon=True) for v in victims]
    for t in threads:
        t.start()
    wait_for(lambda: all(len(v.times) >= 3 for v in victims), 60, "every victim streaming")
    return victims, threads


def connect_from(address: str, port: int) -> socket.socket:
    """A TCP connection to the API on loopback from a loopback address of our choosing (127.0.0.x)."""
    sock = socket.socket()
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers under its master)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children


def close_wait_sockets(port: int) -> int:
    """Sockets of the server's port left in CLOSE-WAIT: the peer closed, the server has not noticed."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "08":
                count += 1
    return count
