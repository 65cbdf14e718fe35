"""Model management end to end: load a second model at runtime while the first keeps streaming,
route by model, unload it; a failing load; unsafe names; Hub search with no network.

Two real workers and the API on a Redis database of their own.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import requests
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from devtools.clients import indexed, iter_sse, read_sse, stream_text, submit
from devtools.servers import Process, start_api, start_worker, wait_for
from shared import bus, fleet
from shared.messages import LOAD_PENDING, UNLOAD_PENDING, ModelLoadState, ModelState
from shared.settings import Settings
from tests.e2e.conftest import greedy_text
from workers.builtin_model import ensure_builtin_model
from workers.staging import stage

SECOND = "torchweave-tiny2"


@pytest.fixture(scope="module")
def cluster(
    server_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/3",
        "MODEL_DIR": str(tmp_path_factory.mktemp("model_dir")),
        "MAX_BATCH": "4",
        "HF_HUB_OFFLINE": "1",  # a Hub id loads from CACHE_DIR/hub, as laid out by test_a_hub_model_...
    }
    procs: list[Process] = [start_worker(env, log_dir, "m1"), start_worker(env, log_dir, "m2")]
    api, url = start_api(env, log_dir)
    procs.append(api)
    yield url
    for proc in procs:
        proc.stop()


def models(url: str) -> dict[str, dict[str, Any]]:
    """Every model GET /v1/models lists: the callable ones (`data`) and the others (`history`)."""
    body = requests.get(f"{url}/v1/models", timeout=5).json()
    assert body["object"] == "list"
    assert all(m["state"] in ("ready", "loading") for m in body["data"]), body
    assert all(m["state"] in ("failed", "unloaded") for m in body["history"]), body
    return {m["id"]: m for m in body["data"] + body["history"]}


def wait_state(url: str, model: str, state: str, timeout_s: float = 90) -> dict[str, Any]:
    wait_for(lambda: models(url).get(model, {}).get("state") == state, timeout_s, f"{model} {state}")
    return models(url)[model]


def follow_to_end(url: str, sub: dict[str, Any], out: dict[str, list], key: str) -> None:
    out[key] = read_sse(sub["stream_url"], timeout=120)


def test_load_a_second_model_while_the_first_streams_then_unload_it(
    cluster: str, reference: Any, cache_dir: Path
) -> None:
    url = cluster
    # Requests to the first model stream throughout the switch.
    prompts = [f"keep streaming {i}" for i in range(4)]
    subs = [submit(url, prompt=p, max_new_tokens=300, temperature=0, ignore_eos=True) for p in prompts]
    results: dict[str, list] = {}
    readers = [
        threading.Thread(target=follow_to_end, args=(url, s, results, s["id"]), daemon=True) for s in subs
    ]
    for t in readers:
        t.start()

    events: list[dict[str, Any]] = []
    subscribed = threading.Event()

    def watch() -> None:
        with requests.get(f"{url}/v1/models/events", stream=True, timeout=120) as resp:
            # The response has begun: its cursor is fixed, every later change will reach us.
            subscribed.set()
            for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
                events.append(event.data)
                if event.data["model"] == SECOND and event.data["state"] in ("ready", "failed"):
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert subscribed.wait(30), "the model events stream never opened"

    resp = requests.post(f"{url}/v1/models/load", json={"model": SECOND, "workers": 1}, timeout=10)
    assert resp.status_code == 202, resp.text
    [loader] = resp.json()["workers"]
    assert models(url)[SECOND]["state"] in ("loading", "ready")
    watcher.join(90)
    mine = [e for e in events if e["model"] == SECOND]
    assert mine[-1]["state"] == "ready", mine
    assert any(e["state"] == "loading" and 0 < e["progress"] < 100 for e in mine), mine  # progress showed
    assert wait_state(url, SECOND, "ready")["workers"] == [loader]

    # Requests route by model: the second model answers as itself, on the worker that loaded it.
    path = cache_dir / "models" / SECOND
    second = (AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval())
    sub = submit(url, prompt="route me", max_new_tokens=20, temperature=0, model=SECOND)
    assert stream_text(read_sse(sub["stream_url"])) == greedy_text(second, "route me", 20)
    assert requests.get(f"{url}/v1/requests/{sub['id']}", timeout=5).json()["worker_id"] == loader
    sub = submit(url, prompt="and me", max_new_tokens=20, temperature=0)
    assert stream_text(read_sse(sub["stream_url"])) == greedy_text(reference, "and me", 20)

    # The first model's streams never broke: each ended done, complete and exactly right.
    for t in readers:
        t.join(120)
    for s, p in zip(subs, prompts, strict=True):
        got = indexed(results[s["id"]])
        assert [e.event for e in got][-1] == "done"
        assert [int(e.id) for e in got if e.id] == list(range(len(got)))
        assert stream_text(got) == greedy_text(reference, p, 300, ignore_eos=True)

    workers = requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]
    assert sorted(w["model"] for w in workers) == sorted(["torchweave-tiny", SECOND])
    assert all(w["node"] and w["state"] == "ready" and "tokens_per_s" in w for w in workers)
    status = requests.get(f"{url}/status", timeout=5).json()
    assert status["workers"]["ready"] == 2
    assert status["models"][SECOND]["state"] == "ready" and SECOND in status["queue_depth"]

    resp = requests.post(f"{url}/v1/models/unload", json={"model": SECOND}, timeout=10)
    assert resp.status_code == 202, resp.text
    assert resp.json()["workers"] == [loader]
    wait_state(url, SECOND, "unloaded")
    resp = requests.post(f"{url}/v1/requests", json={"prompt": "gone", "model": SECOND}, timeout=10)
    assert resp.status_code == 404 and "POST /v1/models/load" in resp.json()["error"]["message"]
    wait_for(
        lambda: any(
            w["state"] == "idle" for w in requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]
        ),
        20,
        "the unloaded worker idle",
    )


def test_a_failing_load_reports_failed_with_its_reason(cluster: str) -> None:
    url = cluster
    resp = requests.post(f"{url}/v1/models/load", json={"model": "./no-such-model"}, timeout=10)
    assert resp.status_code == 202, resp.text
    info = wait_state(url, "./no-such-model", "failed", 60)
    assert "does not exist" in info["reason"]
    # The worker that tried lives on, and the first model still answers.
    sub = submit(url, prompt="still here", max_new_tokens=5, temperature=0)
    assert [e.event for e in indexed(read_sse(sub["stream_url"]))][-1] == "done"


def test_a_load_or_unload_whose_command_was_lost_still_happens(
    cluster: str, server_env: dict[str, str]
) -> None:
    # The API records each pending load or unload in Redis before it broadcasts the command; a worker
    # that never got the command (it was not listening yet) carries it out with its heartbeat. Here
    # nothing is broadcast: the records alone must do it.
    url = cluster
    r = bus.connect(server_env["REDIS_URL"].rsplit("/", 1)[0] + "/3")
    workers = fleet.list_workers(r)
    # Whatever the tests before left: one worker that does not serve SECOND takes part.
    target = next(w for w in workers if w.model != SECOND)

    def record(model: str, state: ModelLoadState, stage: str) -> None:
        pending = ModelState(
            model=model, worker_id=target.worker_id, state=state, stage=stage, updated_at=time.time()
        )
        fleet.publish_model_state(r, pending)

    def state_of_target() -> tuple[str, str]:
        [w] = [w for w in fleet.list_workers(r) if w.worker_id == target.worker_id]
        return w.model, w.state

    record(SECOND, ModelLoadState.LOADING, LOAD_PENDING)
    wait_for(lambda: state_of_target() == (SECOND, "ready"), 60, "the pending load carried out")
    assert target.worker_id in wait_state(url, SECOND, "ready", 60)["workers"]
    record(SECOND, ModelLoadState.UNLOADED, UNLOAD_PENDING)
    wait_for(lambda: state_of_target()[1] == "idle", 60, "the pending unload carried out")
    assert target.worker_id not in models(url)[SECOND]["workers"]


@pytest.mark.parametrize("name", ["../../etc", "/etc", "./a/../../outside", "evil/../x", "a/b/c", "-rf"])
def test_unsafe_model_names_are_refused(cluster: str, name: str) -> None:
    resp = requests.post(f"{cluster}/v1/models/load", json={"model": name}, timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "model"
    resp = requests.post(f"{cluster}/v1/requests", json={"prompt": "x", "model": name}, timeout=10)
    assert resp.status_code == 400, resp.text


def test_hub_search_without_network_is_a_clear_503(cluster: str) -> None:
    resp = requests.get(f"{cluster}/v1/models/search", params={"q": "llama", "limit": "5"}, timeout=30)
    assert resp.status_code == 503, resp.text
    assert "Hugging Face Hub cannot be reached" in resp.json()["error"]["message"]
    assert (
        requests.get(f"{cluster}/v1/models/search", params={"q": "x", "limit": "0"}, timeout=10).status_code
        == 400
    )
    assert requests.get(f"{cluster}/v1/models/search", timeout=10).status_code == 400


def test_unload_of_a_model_nobody_serves_is_404(cluster: str) -> None:
    resp = requests.post(f"{cluster}/v1/models/unload", json={"model": "nobody/serves-this"}, timeout=10)
    assert resp.status_code == 404
    assert json.loads(resp.text)["error"]["code"] == "model_not_found"


def test_autoload_switches_a_worker_and_an_idle_model_is_unloaded(
    server_env: dict[str, str], log_dir: Path, cache_dir: Path, reference: Any
) -> None:
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/4",
        "AUTOLOAD": "1",
        "MODEL_IDLE_TTL": "3",
    }
    worker = start_worker(env, log_dir, "auto")
    api, url = start_api(env, log_dir)
    try:
        # No worker serves the second model: the request queues and the (only) worker switches to it.
        sub = submit(url, prompt="load me", max_new_tokens=10, temperature=0, model=SECOND)
        path = cache_dir / "models" / SECOND
        second = (AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval())
        assert stream_text(read_sse(sub["stream_url"], timeout=90)) == greedy_text(second, "load me", 10)
        # Unused for MODEL_IDLE_TTL, it is unloaded; the worker goes idle.
        wait_state(url, SECOND, "unloaded", 30)
        wait_for(
            lambda: (
                [w["state"] for w in requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]]
                == ["idle"]
            ),
            20,
            "the worker idle",
        )
        # The default model comes back on demand too.
        sub = submit(url, prompt="and back", max_new_tokens=10, temperature=0)
        assert stream_text(read_sse(sub["stream_url"], timeout=90)) == greedy_text(reference, "and back", 10)
    finally:
        api.stop()
        worker.stop()


HUB_ID = "testorg/tiny-hub"


def lay_out_hub_cache(cache_dir: Path, repo_id: str, files: Path) -> None:
    """Put a model in CACHE_DIR/hub the way huggingface_hub stores a download: a snapshot per commit
    and refs/main naming it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    if not snapshot.exists():
        shutil.copytree(files, snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)


def load_and_check_it_serves_second(url: str, cache_dir: Path, model_id: str, prompt: str) -> None:
    """Load `model_id` on one worker and check it answers greedily as the second built-in model, whose
    weights it was laid out with."""
    resp = requests.post(f"{url}/v1/models/load", json={"model": model_id, "workers": 1}, timeout=10)
    assert resp.status_code == 202, resp.text
    assert wait_state(url, model_id, "ready", 90)["state"] == "ready"
    path = cache_dir / "models" / SECOND
    second = (AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval())
    sub = submit(url, prompt=prompt, max_new_tokens=12, temperature=0, model=model_id)
    assert stream_text(read_sse(sub["stream_url"])) == greedy_text(second, prompt, 12)


def test_a_hub_model_in_the_cache_loads_by_its_id_offline(cluster: str, cache_dir: Path) -> None:
    url = cluster
    lay_out_hub_cache(cache_dir, HUB_ID, ensure_builtin_model(cache_dir, SECOND))
    load_and_check_it_serves_second(url, cache_dir, HUB_ID, "from the hub")
    # The API counts the prompt with the tokenizer it finds in CACHE_DIR/hub, as the worker loads it,
    # against the context the worker's heartbeat reports.
    wait_for(
        lambda: any(
            w["model"] == HUB_ID and w["state"] == "ready"
            for w in requests.get(f"{url}/v1/workers", timeout=5).json()["workers"]
        ),
        30,
        "a heartbeat from the worker serving it",
    )
    too_long = requests.post(
        f"{url}/v1/requests", json={"prompt": "x" * 2100, "model": HUB_ID, "max_new_tokens": 8}, timeout=10
    )
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    assert requests.post(f"{url}/v1/models/unload", json={"model": HUB_ID}, timeout=10).status_code == 202
    wait_state(url, HUB_ID, "unloaded", 60)


STAGED_ID = "testorg/staged-hub"


def test_a_staged_model_is_served_by_its_id_with_its_hub_cache_gone(
    cluster: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`torchweave stage` leaves a checked safetensors copy in CACHE_DIR/staged; a worker serves it from
    there, the Hub cache deleted and HF_HUB_OFFLINE=1."""
    url = cluster
    lay_out_hub_cache(cache_dir, STAGED_ID, ensure_builtin_model(cache_dir, SECOND))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    stage(STAGED_ID, Settings(cache_dir=cache_dir, device="cpu", dtype="fp32"), torch.float32, print)
    shutil.rmtree(cache_dir / "hub" / ("models--" + STAGED_ID.replace("/", "--")))
    load_and_check_it_serves_second(url, cache_dir, STAGED_ID, "from the stage")
    assert requests.post(f"{url}/v1/models/unload", json={"model": STAGED_ID}, timeout=10).status_code == 202
    wait_state(url, STAGED_ID, "unloaded", 60)
