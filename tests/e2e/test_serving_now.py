"""What serves now, end to end: the live views (the Models page in chromium too) leave out workers that
stopped, GET /v1/models (and so the OpenAI client's models.list()) lists only models a request can name,
and a request accepted for a model that goes away ends with a reason instead of waiting forever
(UNSERVED_TIMEOUT).

Two real workers and the API on a Redis of their own; the tests run in order and share them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI
from playwright.sync_api import expect, sync_playwright

from devtools.clients import SseEvent, indexed, iter_sse
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import Process, start_api, start_worker, wait_for
from shared import bus, fleet

SECOND = "torchweave-tiny2"
CHROMIUM = "/usr/bin/chromium"
UNSERVED_TIMEOUT_S = 6.0


@dataclass
class Cluster:
    url: str
    redis_url: str
    workers: list[Process]


@pytest.fixture(scope="module")
def cluster(
    server_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("serving-now")).start()
    env = {
        **server_env,
        "REDIS_URL": server.url,
        "UNSERVED_TIMEOUT": str(UNSERVED_TIMEOUT_S),
        # The default's pace (2 s) or slower: a heartbeat lags an unload as long, and a request that comes
        # meanwhile must still end.
        "HEARTBEAT_INTERVAL": "3",
    }
    procs = [start_worker(env, log_dir, "now1"), start_worker(env, log_dir, "now2")]
    api, url = start_api(env, log_dir)
    yield Cluster(url, server.url, procs)
    for proc in (api, *procs):
        proc.stop()
    server.stop()


def worker_id_of(c: Cluster, proc: Process) -> str:
    [w] = [w for w in fleet.list_workers(bus.connect(c.redis_url)) if w.pid == proc.pid]
    return w.worker_id


def listing(url: str) -> dict[str, Any]:
    resp = requests.get(f"{url}/v1/models", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def snapshot(url: str) -> list[dict[str, Any]]:
    """The model events stream's opening snapshot: sent at once, before the first keep-alive comment (or
    the first change, which carries an id)."""
    events: list[dict[str, Any]] = []

    def until_keep_alive(lines: Iterator[bytes]) -> Iterator[bytes]:
        for line in lines:
            if line == b": keep-alive":
                return
            yield line

    with requests.get(f"{url}/v1/models/events", stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        for event in iter_sse(until_keep_alive(resp.iter_lines(delimiter=b"\n"))):
            if event.id is not None:
                break
            events.append(event.data)
    return events


def workers(url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]
    return found


def model_ids(url: str) -> list[str]:
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    return sorted(m.id for m in client.models.list().data)


def test_a_stopped_worker_leaves_the_live_views_and_only_callable_models_are_listed(cluster: Cluster) -> None:
    url = cluster.url
    first, second = (worker_id_of(cluster, p) for p in cluster.workers)
    shown = snapshot(url)
    assert {(e["worker_id"], e["state"]) for e in shown} == {(first, "ready"), (second, "ready")}, shown

    # The Models view, open in chromium while the worker stops: its bar goes with it.
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort()
        )
        page.goto(f"{url}/ui/models")
        bars = page.locator("tr[data-model='torchweave-tiny'] progress")
        expect(bars).to_have_count(2, timeout=30_000)
        cluster.workers[1].stop()
        expect(bars).to_have_count(1, timeout=30_000)  # GET /v1/models, read every 5 s, lists it no more
        expect(bars.first).to_have_attribute("data-worker", first)
        browser.close()
    wait_for(lambda: second not in listing(url)["data"][0]["workers"], 30, "the stopped worker unlisted")
    [model] = listing(url)["data"]
    assert model["workers"] == [first]
    assert [s["worker_id"] for s in model["per_worker"]] == [first]
    shown = snapshot(url)
    assert [e["worker_id"] for e in shown] == [first], shown  # the stopped worker's "ready" is not live

    # A failed load is history, not a model to call; the OpenAI client lists only what can be called.
    resp = requests.post(f"{url}/v1/models/load", json={"model": "./no-such-model"}, timeout=10)
    assert resp.status_code == 202, resp.text
    wait_for(
        lambda: any(m["id"] == "./no-such-model" for m in listing(url)["history"]),
        60,
        "the failed load listed",
    )
    body = listing(url)
    [failed] = [m for m in body["history"] if m["id"] == "./no-such-model"]
    assert failed["state"] == "failed" and "does not exist" in failed["reason"]
    assert [m["id"] for m in body["data"]] == ["torchweave-tiny"]
    assert model_ids(url) == ["torchweave-tiny"]
    # The snapshot is in time order: the live worker's ready, then its failed load.
    shown = snapshot(url)
    assert [e["updated_at"] for e in shown] == sorted(e["updated_at"] for e in shown), shown
    assert [e["state"] for e in shown] == ["ready", "failed"], shown


def follow(stream_url: str, out: list[SseEvent]) -> None:
    with requests.get(stream_url, stream=True, timeout=(10, 60)) as resp:
        assert resp.status_code == 200, resp.text
        for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
            out.append(event)
            if event.event in ("done", "error"):
                return


def test_a_request_sent_while_its_model_unloads_runs_or_fails_with_a_reason(cluster: Cluster) -> None:
    url = cluster.url
    resp = requests.post(f"{url}/v1/models/load", json={"model": SECOND, "workers": 1}, timeout=10)
    assert resp.status_code == 202, resp.text
    wait_for(
        lambda: any(m["id"] == SECOND and m["state"] == "ready" for m in listing(url)["data"]), 90, "loaded"
    )
    assert SECOND in model_ids(url)

    resp = requests.post(f"{url}/v1/models/unload", json={"model": SECOND}, timeout=10)
    assert resp.status_code == 202, resp.text
    # Requests keep coming while the unload runs and for a while after: each is refused with a reason or
    # accepted, and then every accepted one ends.
    accepted, refused = [], []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        resp = requests.post(
            f"{url}/v1/requests", json={"prompt": "late", "model": SECOND, "max_new_tokens": 4}, timeout=10
        )
        assert resp.status_code in (202, 404), resp.text
        if resp.status_code == 404:
            assert "POST /v1/models/load" in resp.json()["error"]["message"]
            refused.append(resp)
        else:
            accepted.append(resp.json())
        time.sleep(0.1)
    streams: list[list[SseEvent]] = [[] for _ in accepted]
    readers = [
        threading.Thread(target=follow, args=(sub["stream_url"], out), daemon=True)
        for sub, out in zip(accepted, streams, strict=True)
    ]
    for t in readers:
        t.start()
    for t in readers:
        t.join(UNSERVED_TIMEOUT_S + 60)
    for sub, events in zip(accepted, streams, strict=True):
        ended = indexed(events)
        assert ended and ended[-1].event in ("done", "error"), (sub["id"], events)
    print(f"during the unload: {len(accepted)} accepted (all ended), {len(refused)} refused with 404")
    assert refused, "a request after the unload answered must be refused"
    assert SECOND not in model_ids(url)


def test_a_request_for_a_model_no_worker_will_load_fails_after_the_bound(cluster: Cluster) -> None:
    url = cluster.url
    # Every worker idle (after the test before, there is nothing to unload): nobody serves the default
    # model, which still queues (its workers may be starting), until UNSERVED_TIMEOUT says nobody will.
    for model in listing(url)["data"]:
        requests.post(f"{url}/v1/models/unload", json={"model": model["id"]}, timeout=10)
    wait_for(
        lambda: {w["state"] for w in workers(url)} == {"idle"},
        30,
        "every worker idle",
    )
    started = time.monotonic()
    resp = requests.post(f"{url}/v1/requests", json={"prompt": "anyone?", "max_new_tokens": 4}, timeout=10)
    assert resp.status_code == 202, resp.text
    events: list[SseEvent] = []
    reader = threading.Thread(target=follow, args=(resp.json()["stream_url"], events), daemon=True)
    reader.start()
    reader.join(UNSERVED_TIMEOUT_S + 60)
    waited = time.monotonic() - started
    assert indexed(events), f"no end after {waited:.0f} s: {events[-3:]}"
    [error] = indexed(events)
    assert error.event == "error", events
    assert "UNSERVED_TIMEOUT" in error.data["message"] and "torchweave-tiny" in error.data["message"], (
        error.data
    )
    assert waited >= UNSERVED_TIMEOUT_S, waited
    print(f"failed after {waited:.1f} s (UNSERVED_TIMEOUT {UNSERVED_TIMEOUT_S:g} s)")
    status = requests.get(f"{url}/v1/requests/{resp.json()['id']}", timeout=10).json()
    assert status["status"] == "failed" and "UNSERVED_TIMEOUT" in status["error"]
