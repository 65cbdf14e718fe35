"""A worker paused past its lease (SIGSTOP) wakes up after another worker took its request over and ended
it: it must write nothing more for that request (shared/fence.py). Two workers, an API and keys on a
Redis database of their own, so pausing a worker disturbs no other test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.clients import indexed, read_sse, submit_as
from devtools.servers import Process, start_api, start_worker, wait_for
from shared import bus, keys, metrics, timeline
from shared.messages import RequestStatus
from tests.e2e.conftest import auth
from tests.e2e.test_streams import read_first

ADMIN = "tw-zombie-admin-key"
MAX_NEW = 1900  # long enough that the heir is still decoding when the cancel comes


@pytest.fixture(scope="module")
def pair(server_env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, dict[str, str], list[Process]]]:
    # HEARTBEAT_INTERVAL 0.5 s (server_env): a lease of 2 s, renewed every half second.
    redis_url = server_env["REDIS_URL"].rsplit("/", 1)[0] + "/1"
    env = {**server_env, "REDIS_URL": redis_url, "ADMIN_API_KEY": ADMIN, "MAX_BATCH": "4"}
    bus.connect(env["REDIS_URL"]).flushdb()
    workers = [start_worker(env, log_dir, f"zombie-w{i}", log_level="info") for i in (1, 2)]
    api, url = start_api(env, log_dir)
    yield url, env, workers
    for proc in [*workers, api]:
        proc.stop()


def snapshot(r: Any, request_id: str, tokens_key: str) -> dict[str, Any]:
    """Everything a worker writes for a request: its stream, record, timeline, lease, the metrics and
    its key's token counter."""
    return {
        "events": [e.model_dump() for e in bus.read_events(r, request_id, count=None)],
        "record": r.hgetall(keys.request_key(request_id)),
        "timeline": timeline.read(r, request_id),
        "lease": r.zscore(keys.LEASES, request_id),
        "metrics": r.hgetall(keys.METRICS),
        "tokens": r.get(tokens_key),
    }


def total(r: Any, family: metrics.Family) -> float:
    return sum(s.total for s in metrics.read(r) if s.family is family)


def test_a_worker_paused_past_its_lease_writes_nothing_for_the_request_when_it_wakes(
    pair: tuple[str, dict[str, str], list[Process]],
) -> None:
    url, env, workers = pair
    r = bus.connect(env["REDIS_URL"])
    made = requests.post(f"{url}/v1/keys", json={"name": "zombie", "tpm": 100_000}, headers=auth(ADMIN),
                         timeout=10)  # fmt: skip
    secret = made.json()["secret"]
    sub = submit_as(
        url, auth(secret), prompt="zombie", max_new_tokens=MAX_NEW, temperature=0, ignore_eos=True
    )
    rid = sub["id"]
    read_first(sub["stream_url"], 3, headers=auth(secret))  # it runs
    stored = bus.load_request(r, rid)
    assert stored is not None and stored.request.charge is not None and stored.state.worker_id
    charge, paused_id = stored.request.charge, stored.state.worker_id
    tokens_key = keys.rate_key(charge.key_id, "tok", charge.window)
    paused = next(p for p in workers if p.pid == int(paused_id.rsplit("-", 1)[1]))

    def state() -> Any:
        found = bus.load_request(r, rid)
        assert found is not None
        return found.state

    os.kill(paused.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: state().worker_id not in (None, paused_id), 60, "the other worker to take over")
        heir_id = state().worker_id
        requests.delete(f"{url}/v1/requests/{rid}", headers=auth(secret), timeout=10)
        wait_for(lambda: state().status.is_final, 60, "the heir to end the request")
        before = snapshot(r, rid, tokens_key)
        log_mark = paused.log_path.stat().st_size
    finally:
        os.kill(paused.pid, signal.SIGCONT)

    def acted() -> bool:  # the woken worker let the request go (or, unfenced, ended it a second time)
        with open(paused.log_path, "rb") as log:
            log.seek(log_mark)
            lines = [line for line in log.read().decode(errors="replace").splitlines() if rid in line]
        return any("holds it now" in line or "ended here" in line for line in lines)

    wait_for(acted, 60, "the woken worker to act on the request", paused)
    after = snapshot(r, rid, tokens_key)
    zombie_writes = sum(before[k] != after[k] for k in before) + len(after["events"]) - len(before["events"])
    print(f"zombie worker's writes after waking: {zombie_writes}")
    assert after == before

    # What a single run gives: one end, by the heir, counted once and refunded once.
    events = indexed(read_sse(sub["stream_url"], headers=auth(secret), timeout=60))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    done = events[-1].data
    assert events[-1].event == "done" and [e.event for e in events].count("done") == 1
    final = state()
    assert final.worker_id == heir_id and final.finish_reason.value == done["finish_reason"]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
        done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"])  # fmt: skip
    assert final.status in (RequestStatus.CANCELLED, RequestStatus.FINISHED)
    ends = [s for s in timeline.read(r, rid) if s["kind"] in ("finished", "cancelled", "failed")]
    assert len(ends) == 1 and ends[0]["worker"] == heir_id
    assert total(r, metrics.SUCCESS) == 1
    assert total(r, metrics.GENERATION_TOKENS) == done["usage"]["completion_tokens"]
    assert total(r, metrics.PROMPT_TOKENS) == done["usage"]["prompt_tokens"]
    assert int(r.get(tokens_key) or 0) == done["usage"]["total_tokens"]  # reserved, less one refund
