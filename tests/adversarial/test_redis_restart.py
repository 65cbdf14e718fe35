"""Redis crashes (SIGKILL) mid-run and comes back 3 s later from its append-only file. Every request
accepted before the crash ends, done or with an error that says what happened, and none hangs; each
stream its client follows has no gap and no repeat."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.clients import iter_sse, submit
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import cluster_on_own_redis, wait_for

NUM_REQUESTS = 30
DOWN_S = 3.0


@pytest.fixture(scope="module")
def restart_cluster(
    server_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, EmbeddedRedis]]:
    env = {**server_env, "REDISPATCH_AFTER": "3", "VISIBILITY_TIMEOUT": "5"}
    with cluster_on_own_redis(env, log_dir, tmp_path_factory.mktemp("redis-restart"), "restart") as cluster:
        yield cluster


class Follower:
    """Reads one stream to its end, reconnecting after the last index it saw if the connection drops."""

    def __init__(self, stream_url: str) -> None:
        self.stream_url = stream_url
        self.indexes: list[int] = []
        self.last: tuple[str, str] = ("", "")  # (event, message)

    def follow(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            headers = {"Last-Event-ID": str(self.indexes[-1])} if self.indexes else {}
            try:
                with requests.get(self.stream_url, headers=headers, stream=True, timeout=30) as resp:
                    if resp.status_code != 200:
                        self.last = ("http", f"{resp.status_code} {resp.text}")
                        time.sleep(0.5)
                        continue
                    for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
                        if event.event in ("queued", "ttft"):
                            continue
                        if event.id is not None:
                            self.indexes.append(int(event.id))
                        if event.event != "token":
                            self.last = (event.event, event.data.get("message", ""))
                            return
            except requests.RequestException:
                time.sleep(0.5)


def test_every_accepted_request_ends_after_a_redis_crash(restart_cluster: tuple[str, EmbeddedRedis]) -> None:
    url, server = restart_cluster
    followers = []
    for i in range(NUM_REQUESTS):  # 8 run at once, the rest wait in the queue
        sub = submit(url, prompt=f"restart {i}", max_new_tokens=300, temperature=0, ignore_eos=True)
        followers.append(Follower(sub["stream_url"]))
    deadline = time.monotonic() + 240
    threads = [threading.Thread(target=f.follow, args=(deadline,), daemon=True) for f in followers]
    for t in threads:
        t.start()
    wait_for(lambda: sum(len(f.indexes) >= 5 for f in followers) >= 4, 60, "requests streaming")
    server.kill()
    time.sleep(DOWN_S)
    server.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    outcomes = Counter(f.last[0] for f in followers)
    print(f"after the crash: {dict(outcomes)}; errors: {sorted({f.last[1] for f in followers if f.last[1]})}")
    assert not any(t.is_alive() for t in threads), "a stream hung"
    for f in followers:
        assert f.last[0] in ("done", "error"), f.last
        assert f.indexes == list(range(len(f.indexes))), f"gap or repeat: {f.indexes[-10:]}"
        if f.last[0] == "error":
            assert "Redis" in f.last[1] or "lost" in f.last[1], f.last[1]
    wait_for(
        lambda: requests.get(f"{url}/health", timeout=5).status_code == 200, 30, "health after the crash"
    )
