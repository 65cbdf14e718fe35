"""The Grafana dashboard and the alert rules ask only for metrics we export: every metric name in every
panel's query and every rule's expression is one the exporter or the API's /metrics serves."""

from __future__ import annotations

import json
import re

import prometheus_client
import yaml
from prometheus_client import CollectorRegistry, Metric

import api.telemetry  # noqa: F401 - registers the API's metrics in prometheus_client's default registry
from monitoring.collector import RedisStateCollector
from monitoring.request_metrics import RequestMetricsCollector
from shared import bus
from shared.settings import PROJECT_ROOT

MONITORING = PROJECT_ROOT / "monitoring"
_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
_NOT_METRICS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf"}


def sample_names(families: list[Metric]) -> set[str]:
    return {f.name + suffix for f in families for suffix in _SUFFIXES[f.type]}


def exported(redis_url: str) -> set[str]:
    """Every sample name a scrape of the exporter or the API can show (Prometheus adds `up`)."""
    registry = CollectorRegistry()
    client = bus.connect(redis_url)
    registry.register(RedisStateCollector(client, "torchweave-tiny"))
    registry.register(RequestMetricsCollector(client, "torchweave-tiny"))
    api = [f for f in prometheus_client.REGISTRY.collect() if f.name.startswith("torchweave_")]
    return sample_names(list(registry.collect())) | sample_names(api) | {"up"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, strings and ranges left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in _NOT_METRICS}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "torchweave.json").read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_every_panel_query_names_an_exported_metric(redis_url: str) -> None:
    known = exported(redis_url)
    for title, expr in dashboard_queries():
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert names <= known, f"{title}: {sorted(names - known)} are not exported"


def test_every_alert_rule_names_an_exported_metric(redis_url: str) -> None:
    known = exported(redis_url)
    groups = yaml.safe_load((MONITORING / "prometheus" / "alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        names = metric_names(rule["expr"])
        assert names and names <= known, f"{rule['alert']}: {sorted(names - known)} are not exported"


def test_the_dashboard_covers_what_operators_look_for() -> None:
    queries = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "vllm:generation_tokens_total",  # throughput
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:num_requests_waiting",  # queue depth
        "vllm:kv_cache_usage_perc",
        "torchweave_worker_state",
        "torchweave_requests_rejected_total",  # errors
    ):
        assert metric in queries, metric


def test_the_name_parser_finds_names_and_only_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, model_name) (rate(vllm:ttft_bucket{model_name=~"$m"}[5m]))) > 2'
    )
    assert metric_names(expr) == {"vllm:ttft_bucket"}
    assert metric_names("a_total and deriv(sum(b)[5m:30s]) > 0") == {"a_total", "b"}
