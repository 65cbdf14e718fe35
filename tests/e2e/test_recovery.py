"""Nothing lost: a worker killed mid-generation, a worker stopped with SIGTERM.

These tests run their own two workers and API on a Redis database of their own, so killing
a worker disturbs no other test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from devtools.clients import indexed, read_sse, stream_text, submit
from devtools.scrape import Sample, parse, total
from devtools.servers import Process, start_api, start_worker, wait_for
from monitoring.request_metrics import RequestMetricsCollector
from shared import bus
from tests.e2e.conftest import greedy_text
from tests.e2e.test_streams import read_first

PROMPTS = ["Crash one", "Crash two, a little longer", "Three", "Four: the last of them"]
MAX_NEW = 500


@pytest.fixture(scope="module")
def cluster(server_env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, dict[str, Process]]]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/2",
        "DRAIN_TIMEOUT": "1",
        "MAX_BATCH": "4",
    }
    workers = {p.name: p for p in (start_worker(env, log_dir, "w1"), start_worker(env, log_dir, "w2"))}
    api, url = start_api(env, log_dir)
    yield url, workers
    for proc in [*workers.values(), api]:
        proc.stop()


def worker_of(url: str, request_id: str) -> str:
    """The id (host-pid) of the worker running a request, once one claimed it."""
    wait_for(
        lambda: requests.get(f"{url}/v1/requests/{request_id}", timeout=5).json()["worker_id"], 30, "a worker"
    )
    worker_id: str = requests.get(f"{url}/v1/requests/{request_id}", timeout=5).json()["worker_id"]
    return worker_id


def pid_of(worker_id: str) -> int:
    return int(worker_id.rsplit("-", 1)[1])


def worker_metrics(redis_url: str) -> list[Sample]:
    """What the exporter serves of the request metrics on this Redis (its collector, in-process)."""
    registry = CollectorRegistry()
    registry.register(RequestMetricsCollector(bus.connect(redis_url), "torchweave-tiny"))
    return parse(generate_latest(registry).decode())


def test_sigkill_mid_generation_continues_on_the_other_worker(
    cluster: tuple[str, dict[str, Process]], reference: Any, server_env: dict[str, str], log_dir: Path
) -> None:
    url, workers = cluster
    redis_url = server_env["REDIS_URL"].rsplit("/", 1)[0] + "/2"
    before = worker_metrics(redis_url)
    subs = [submit(url, prompt=p, max_new_tokens=MAX_NEW, temperature=0, ignore_eos=True) for p in PROMPTS]
    head, _ = read_first(subs[0]["stream_url"], 5)
    victim_id = worker_of(url, subs[0]["id"])
    victim = next(p for p in workers.values() if p.pid == pid_of(victim_id))
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The first stream is followed from where the client was; the others from the start.
    rest = indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=60))
    print(f"the first stream finished {time.monotonic() - killed_at:.1f} s after the kill")
    streams = [head + rest] + [indexed(read_sse(s["stream_url"], timeout=60)) for s in subs[1:]]
    for prompt, sub, events in zip(PROMPTS, subs, streams, strict=True):
        assert [e.data["index"] for e in events] == list(range(len(events))), (
            "an index repeated or went missing"
        )
        assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == MAX_NEW
        assert stream_text(events) == greedy_text(reference, prompt, MAX_NEW, ignore_eos=True), (
            f"{prompt!r} differs"
        )
        status = requests.get(f"{url}/v1/requests/{sub['id']}", timeout=5).json()
        assert status["status"] == "finished" and status["worker_id"] != victim_id
    victim.stop()
    workers[victim.name] = start_worker(
        {**server_env, "REDIS_URL": redis_url, "DRAIN_TIMEOUT": "1", "MAX_BATCH": "4"}, log_dir, victim.name
    )
    # The metrics live in Redis, not in the workers: after the kill and the restart they add up to
    # exactly what the clients were sent, each request counted once, whichever worker ended it.
    after = worker_metrics(redis_url)

    def gained(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    dones = [events[-1].data["usage"] for events in streams]
    assert gained("vllm:generation_tokens_total") == sum(u["completion_tokens"] for u in dones) == 4 * MAX_NEW
    assert gained("vllm:prompt_tokens_total") == sum(u["prompt_tokens"] for u in dones)
    assert gained("vllm:request_success_total", finished_reason="length") == len(PROMPTS)
    assert gained("vllm:request_success_total") == len(PROMPTS)
    assert gained("vllm:time_to_first_token_seconds_count") == len(PROMPTS)
    assert gained("vllm:e2e_request_latency_seconds_count") == len(PROMPTS)
    handed_over = gained("torchweave_requests_handed_over_total")
    assert handed_over >= 1  # at least the request whose stream was cut
    assert gained("torchweave_requests_requeued_total", reason="worker_lost") == handed_over


def test_sigterm_hands_unfinished_requests_back(
    cluster: tuple[str, dict[str, Process]], reference: Any
) -> None:
    url, workers = cluster
    subs = [
        submit(url, prompt=p, max_new_tokens=MAX_NEW * 2, temperature=0, ignore_eos=True) for p in PROMPTS
    ]
    head, _ = read_first(subs[0]["stream_url"], 3)
    stopped = worker_of(url, subs[0]["id"])
    pid = pid_of(stopped)
    os.kill(pid, signal.SIGTERM)  # drain timeout is 1 s here: the rest is handed back
    events = head + indexed(read_sse(f"{subs[0]['stream_url']}?from={head[-1].id}", timeout=90))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert stream_text(events) == greedy_text(reference, PROMPTS[0], MAX_NEW * 2, ignore_eos=True)
    # Its timeline tells this stop from a crash: the worker said it was draining, then handed the request
    # back, and only then did the other worker claim it.
    steps = requests.get(f"{url}/v1/requests/{subs[0]['id']}/timeline", timeout=5).json()["steps"]
    moves = [(s["kind"], s["worker"]) for s in steps if s["kind"] in ("claimed", "draining", "requeued")]
    assert moves[:3] == [("claimed", stopped), ("draining", stopped), ("requeued", stopped)], moves
    assert [kind for kind, _ in moves[3:]] == ["claimed"] and moves[3][1] != stopped, moves
    assert next(s for s in steps if s["kind"] == "requeued")["reason"] == "handed back"
    proc = next(p for p in workers.values() if p.pid == pid)
    wait_for(lambda: not proc.is_alive(), 30, "the worker to exit")
    assert proc.popen.returncode == 0  # a clean exit
