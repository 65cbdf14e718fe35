"""Read a Prometheus /metrics page into samples the tests can add up."""

from __future__ import annotations

from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str  # as exposed: with _total, _bucket, _sum or _count
    labels: dict[str, str]
    value: float


def scrape(url: str, token: str = "") -> list[Sample]:
    """Every sample of a /metrics page (sent the bearer token when given)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(url, headers=headers, timeout=10)
    resp.raise_for_status()
    return parse(resp.text)


def parse(text: str) -> list[Sample]:
    """Every sample of a page in Prometheus's text format."""
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of a sample name's values over every series whose labels include `labels`."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by_label(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    """A sample name's values summed per value of one label."""
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            out[s.labels.get(label, "")] = out.get(s.labels.get(label, ""), 0.0) + s.value
    return out
