"""The shipped Prometheus config and alert rules, checked by promtool and run by the real Prometheus
(Debian's package) against a live cluster: it scrapes, and a PromQL query for p50 TTFT has a value.

With UPDATE_SCREENSHOTS=1 the test also runs a minute of mixed load and draws the dashboard's panels
from Prometheus into docs/monitoring/dashboard.png (the README's picture)."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from devtools import prometheus
from devtools.clients import read_sse, submit
from devtools.servers import wait_for
from shared.settings import PROJECT_ROOT
from tests.e2e.conftest import METRICS_TOKEN, ObservedCluster

pytestmark = pytest.mark.skipif(
    not prometheus.is_installed(),
    reason="Debian's prometheus package (prometheus, promtool) is not installed and could not be: "
    "`make test` runs `apt-get install prometheus`",
)
TTFT_P50 = "histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))"
SCREENSHOT = PROJECT_ROOT / "docs" / "monitoring" / "dashboard.png"


@pytest.fixture(scope="module")
def running(
    observed: ObservedCluster, tmp_path_factory: pytest.TempPathFactory, log_dir: Path
) -> Iterator[tuple[prometheus.Prometheus, Path]]:
    work = tmp_path_factory.mktemp("prometheus")
    targets = {"torchweave": observed.exporter_url, "torchweave-api": f"{observed.url}/metrics"}
    config = prometheus.local_config(work, targets, METRICS_TOKEN)
    server = prometheus.Prometheus(config, work, log_dir)
    yield server, config
    server.stop()


def test_promtool_accepts_the_shipped_config_and_rules() -> None:
    # Syntax only: the token file it names is written by compose, inside the container.
    checked = prometheus.promtool("check", "config", "--syntax-only", str(prometheus.CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = prometheus.promtool("check", "rules", str(prometheus.RULES))
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_prometheus_scrapes_both_jobs_and_answers_ttft_p50(
    observed: ObservedCluster, running: tuple[prometheus.Prometheus, Path]
) -> None:
    server, config = running
    checked = prometheus.promtool("check", "config", str(config))  # the full check, token file included
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def both_up() -> bool:
        return {r["metric"]["job"]: r["value"][1] for r in server.query("up")} == {
            "torchweave": "1", "torchweave-api": "1",
        }  # fmt: skip

    wait_for(both_up, 60, "both jobs scraped", server.proc)
    for i in range(3):  # first tokens after the first scrape: the rate over the last minute sees them
        read_sse(
            submit(observed.url, prompt=f"prometheus {i}", max_new_tokens=4, ignore_eos=True)["stream_url"]
        )

    def p50() -> float:
        result = server.query(TTFT_P50)
        return float(result[0]["value"][1]) if result else math.nan

    wait_for(lambda: math.isfinite(p50()) and p50() > 0, 60, "a TTFT p50", server.proc)
    rules = requests.get(f"{server.url}/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]
    assert len(rules) == 5 and all(r["health"] != "err" for r in rules), rules
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        draw_dashboard(observed, server)


def draw_dashboard(observed: ObservedCluster, server: prometheus.Prometheus) -> None:
    """A minute of mixed load (a few refused requests among them), then the panels over it."""
    from devtools.dashboard_chart import render

    def one(i: int) -> None:
        body = {"prompt": f"load {i}", "max_new_tokens": random.randint(8, 64), "ignore_eos": True}
        if i % 10 == 0:
            body["max_new_tokens"] = 0  # refused: 400
        resp = requests.post(f"{observed.url}/v1/requests", json=body, timeout=30)
        if resp.status_code == 202:
            read_sse(resp.json()["stream_url"], timeout=120)

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(6) as pool:
        i = 0
        while time.monotonic() < deadline:
            list(pool.map(one, range(i, i + 6)))
            i += 6
    time.sleep(5)  # the last scrape
    render(server, SCREENSHOT, minutes=2)
