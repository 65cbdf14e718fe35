"""Serve Prometheus metrics on METRICS_PORT: `python -m monitoring.exporter`."""

from __future__ import annotations

import logging
import threading

from prometheus_client import CollectorRegistry, start_http_server

from monitoring.collector import RedisStateCollector
from shared import bus
from shared.settings import get_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    s = get_settings()
    registry = CollectorRegistry()
    registry.register(RedisStateCollector(bus.connect(s.redis_url), s.model))
    start_http_server(s.metrics_port, registry=registry)
    logging.info("metrics on http://0.0.0.0:%d/metrics", s.metrics_port)
    threading.Event().wait()


if __name__ == "__main__":
    main()
