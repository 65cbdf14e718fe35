"""One request followed across processes by its id: the API's, the Celery task's and the engine loop's
JSON log lines carry it, and Flower shows the request's task under that same id."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.clients import read_sse, submit
from devtools.embedded_redis import free_port
from devtools.servers import Process, wait_for
from tests.e2e.conftest import ObservedCluster

FLOWER_AUTH = ("tw", "flower-secret")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a log file; anything else (what libraries print to stderr before logging is
    set up: Celery's root-user warning, gevent's) is skipped."""
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.fixture(scope="module")
def flower(observed: ObservedCluster, log_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {**observed.env, "FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}
    proc = Process(f"flower-{port}", [sys.executable, "-m", "monitoring.flower"], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{url}/healthcheck", auth=FLOWER_AUTH, timeout=5).ok, 60, "Flower", proc)
    yield url
    proc.stop()


def test_a_request_id_runs_through_the_api_task_engine_and_flower(
    observed: ObservedCluster, flower: str
) -> None:
    rid = follow_one_request(observed, flower)
    info = requests.get(f"{flower}/api/task/info/{rid}", auth=FLOWER_AUTH, timeout=5).json()
    # (Its args and name come with the "received" event, which Flower may have missed while connecting.)
    assert info["uuid"] == rid and info["state"] == "SUCCESS"

    api_lines = [x for x in json_lines(observed.api.log_path) if x["request_id"] == rid]
    assert any(x["logger"] == "api.generation.submit" for x in api_lines), api_lines
    assert any(x["logger"] == "gunicorn.access" for x in api_lines), "the access line of the POST"
    worker_log = observed.worker.log_path.read_text(errors="replace")
    assert "[queues]" not in worker_log and "[config]" not in worker_log, "Celery's text banner in JSON logs"
    worker_lines = [x for x in json_lines(observed.worker.log_path) if x["request_id"] == rid]
    loggers = {x["logger"] for x in worker_lines}
    assert "celery.app.trace" in loggers, loggers  # the task's own success line
    assert "workers.engine_loop" in loggers and "workers.request_stream" in loggers, loggers  # the engine


def follow_one_request(observed: ObservedCluster, flower: str) -> str:
    """A request run to its end and seen by Flower under its id; returns the id. Flower may still be
    connecting to the event stream when the first one runs: that one is missed, so up to three are tried."""
    for attempt in range(3):
        sub = submit(observed.url, prompt=f"follow me {attempt}", max_new_tokens=4, ignore_eos=True)
        assert read_sse(sub["stream_url"])[-1].event == "done"

        def task_in_flower(rid: str = sub["id"]) -> bool:
            resp = requests.get(f"{flower}/api/task/info/{rid}", auth=FLOWER_AUTH, timeout=5)
            return resp.ok and resp.json().get("state") == "SUCCESS"

        try:
            wait_for(task_in_flower, 20, "the task in Flower")
            return str(sub["id"])
        except TimeoutError:
            continue
    raise AssertionError("Flower never showed a request's task under its id")


def test_every_refusal_is_logged_with_its_reason_and_request_id(observed: ObservedCluster) -> None:
    missing = "0" * 32
    resp = requests.get(f"{observed.url}/v1/requests/{missing}", timeout=10)
    assert resp.status_code == 404
    reason = resp.json()["error"]["message"]

    def logged() -> bool:
        lines = json_lines(observed.api.log_path)
        return any(x["request_id"] == missing and x["level"] == "WARNING" and reason in x["message"]
                   for x in lines)  # fmt: skip

    wait_for(logged, 10, "the 404's log line")
