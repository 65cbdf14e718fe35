"""The metrics a scrape shows add up to what clients were sent: histogram counts, token counters, finish
reasons (from the exporter), and HTTP requests counted across the API's two gunicorn processes."""

from __future__ import annotations

from typing import Any

import requests

from devtools.clients import indexed, read_sse, stream_text, submit
from devtools.scrape import by_label, scrape, total
from shared import bus, fleet
from tests.e2e.conftest import METRICS_TOKEN, ObservedCluster
from tests.e2e.test_streams import read_first

MODEL = "torchweave-tiny"
HISTOGRAMS = ("time_to_first_token", "e2e_request_latency", "request_queue_time", "request_prefill_time",
              "request_decode_time")  # fmt: skip


def usage_of(events: list[Any]) -> dict[str, Any]:
    done = events[-1]
    assert done.event == "done", done
    return {"reason": done.data["finish_reason"], **done.data["usage"]}


def run_requests(url: str) -> list[dict[str, Any]]:
    """Four requests that end by length, one stopped by a stop string, one cancelled while it runs: the
    usage and finish reason each client received."""
    subs = [submit(url, prompt=f"metrics {i}", max_new_tokens=6 + i, temperature=0, ignore_eos=True)
            for i in range(4)]  # fmt: skip
    streams = [indexed(read_sse(s["stream_url"])) for s in subs]
    # The same greedy prompt again, stopped by a piece of the text it gave before (well before its end).
    pieces = [e.data["text"] for e in streams[3] if e.event == "token"]
    stop = next(p for p in pieces[1:] if p.strip())
    assert stop in stream_text(streams[3])
    stopped = submit(url, prompt="metrics 3", max_new_tokens=9, temperature=0, ignore_eos=True, stop=[stop])
    streams.append(indexed(read_sse(stopped["stream_url"])))
    long = submit(url, prompt="metrics cancelled", max_new_tokens=2000, ignore_eos=True)
    read_first(long["stream_url"], 2)
    assert requests.delete(f"{url}/v1/requests/{long['id']}", timeout=10).status_code == 202
    streams.append(indexed(read_sse(long["stream_url"])))
    return [usage_of(events) for events in streams]


def test_request_metrics_equal_what_clients_received(observed: ObservedCluster) -> None:
    before = scrape(observed.exporter_url, METRICS_TOKEN)  # the cluster is shared: count what this adds
    received = run_requests(observed.url)
    n = len(received)
    assert sorted(u["reason"] for u in received) == ["cancelled", "length", "length", "length", "length",
                                                     "stop"]  # fmt: skip
    # The worker wrote its metrics in the round trip that sent each done event: no wait needed.
    samples = scrape(observed.exporter_url, METRICS_TOKEN)

    def gained(name: str, **labels: str) -> float:
        return total(samples, name, **labels) - total(before, name, **labels)

    for name in HISTOGRAMS:
        assert gained(f"vllm:{name}_seconds_count", model_name=MODEL) == n, name
        assert gained(f"vllm:{name}_seconds_bucket", model_name=MODEL, le="+Inf") == n, name
    completion = sum(u["completion_tokens"] for u in received)
    assert gained("vllm:prompt_tokens_total") == sum(u["prompt_tokens"] for u in received)
    assert gained("vllm:generation_tokens_total") == completion
    # One inter-token latency per token after each request's first.
    assert gained("vllm:inter_token_latency_seconds_count") == completion - n
    reasons = by_label(samples, "vllm:request_success_total", "finished_reason")
    earlier = by_label(before, "vllm:request_success_total", "finished_reason")
    new = {k: d for k, v in reasons.items() if (d := v - earlier.get(k, 0.0))}
    assert new == {"length": 4, "stop": 1, "cancelled": 1}
    [worker] = fleet.list_workers(bus.connect(observed.env["REDIS_URL"]))
    assert {s.labels["worker"] for s in samples if s.name == "vllm:e2e_request_latency_seconds_count"} == {
        worker.worker_id
    }
    assert total(samples, "vllm:time_to_first_token_seconds_sum") > 0
    # Gauges from the heartbeat, and the shared queue's depth (no worker label).
    assert total(samples, "vllm:num_requests_waiting", model_name=MODEL, worker="") == 0
    assert any(
        s.name == "vllm:kv_cache_usage_perc" and s.labels["worker"] == worker.worker_id for s in samples
    )
    assert total(samples, "torchweave_worker_state", state="ready") == 1


def test_api_metrics_add_up_over_its_processes_and_need_the_token(observed: ObservedCluster) -> None:
    url = f"{observed.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    before = scrape(url, METRICS_TOKEN)
    for _ in range(20):
        assert requests.get(f"{observed.url}/health/live", timeout=10).status_code == 200
    bad = requests.post(f"{observed.url}/v1/requests", json={"max_new_tokens": 0}, timeout=10)
    assert bad.status_code == 400
    after = scrape(url, METRICS_TOKEN)
    name = "torchweave_http_requests_total"
    assert total(after, name, route="/health/live") - total(before, name, route="/health/live") == 20
    rejected = "torchweave_requests_rejected_total"
    assert total(after, rejected, status="400") - total(before, rejected, status="400") == 1
    assert total(after, "torchweave_http_request_duration_seconds_count", route="/health/live") >= 20
    # Each process reports its own open streams (a series per pid): both are in one scrape.
    assert len({s.labels["pid"] for s in after if s.name == "torchweave_streams_open"}) == 2
