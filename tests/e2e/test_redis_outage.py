"""A Redis stop and start mid-run: the API answers 503 meanwhile, and the stream then completes.

Runs its own Redis (with appendonly, so it keeps its data across the restart), worker and API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.clients import indexed, read_sse, stream_text, submit
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import cluster_on_own_redis, wait_for
from tests.e2e.test_streams import read_first


@pytest.fixture(scope="module")
def outage_cluster(
    server_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, EmbeddedRedis]]:
    with cluster_on_own_redis(server_env, log_dir, tmp_path_factory.mktemp("redis-aof"), "outage") as cluster:
        yield cluster


def test_stream_survives_a_redis_restart(outage_cluster: tuple[str, EmbeddedRedis]) -> None:
    url, server = outage_cluster
    body = {"prompt": "Outage", "max_new_tokens": 1200, "temperature": 0, "ignore_eos": True}
    reference = stream_text(read_sse(submit(url, **body)["stream_url"]))  # an uninterrupted run
    sub = submit(url, **body)
    head, _ = read_first(sub["stream_url"], 3)
    server.stop()
    try:
        health = requests.get(f"{url}/health", timeout=5)
        assert health.status_code == 503 and "redis" in health.json()["reason"]
        refused = requests.post(f"{url}/v1/requests", json=body, timeout=10)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        time.sleep(2)
    finally:
        server.start()
    events = head + indexed(read_sse(f"{sub['stream_url']}?from={head[-1].id}", timeout=60))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert events[-1].event == "done"
    assert stream_text(events) == reference
    wait_for(
        lambda: requests.get(f"{url}/health", timeout=5).status_code == 200, 30, "health after the outage"
    )
    # The worker's Celery consumer reconnected by itself: a new request is taken and finished.
    after = submit(url, **{**body, "max_new_tokens": 20})
    assert indexed(read_sse(after["stream_url"], timeout=60))[-1].event == "done"
