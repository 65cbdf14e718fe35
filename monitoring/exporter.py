"""Serve Prometheus metrics on HOST:METRICS_PORT: `python -m monitoring.exporter`.

With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>` (Prometheus's
`authorization` block does); without it the exporter serves loopback only (HOST=127.0.0.1).
"""

from __future__ import annotations

import hmac
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from monitoring.collector import RedisStateCollector
from monitoring.request_metrics import RequestMetricsCollector
from shared import bus, logs
from shared.settings import check_exposure, get_settings

log = logging.getLogger(__name__)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def classic_text(app: WsgiApp) -> WsgiApp:
    """The app answering every scrape in Prometheus's classic text format. prometheus_client 0.26 writes
    OpenMetrics (what Prometheus asks for first) with the colons of vLLM's names turned into underscores
    (vllm_time_to_first_token_seconds), which would break every vLLM dashboard; the text format keeps them."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return app({**environ, "HTTP_ACCEPT": "text/plain; version=0.0.4"}, start_response)

    return wrapped


def require_token(app: WsgiApp, token: str) -> WsgiApp:
    """The app behind a bearer token (no token: as it is)."""
    if not token:
        return app

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        sent = environ.get("HTTP_AUTHORIZATION", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer"), ("Content-Type", "text/plain")])
        return [b"a bearer token is required (METRICS_TOKEN)\n"]

    return guarded


def main() -> None:
    s = get_settings()
    logs.configure(s.log_format)
    check_exposure(s, "metrics")
    client = bus.connect(s.redis_url, s.redis_tls_verify)
    registry = CollectorRegistry()
    registry.register(RedisStateCollector(client, s.model))
    registry.register(RequestMetricsCollector(client, s.model, s.metrics_retention_s))
    app = require_token(classic_text(make_wsgi_app(registry)), s.metrics_token)
    server = make_server(s.host, s.metrics_port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    log.info("metrics on http://%s:%d/metrics", s.host, s.metrics_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # As a container's PID 1 (Compose, Kubernetes) SIGTERM has no default action: without a handler the
    # exporter ignored it, and `docker compose down` waited the whole stop timeout for its SIGKILL.
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    server.shutdown()
    log.info("metrics exporter stopped")


if __name__ == "__main__":
    main()
