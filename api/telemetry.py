"""The API's own metrics and request logging: HTTP requests by route and status, their latency, requests
refused (4xx) by reason, streams open, relay lag; GET /metrics serves them.

Under gunicorn every API process counts in its own files in PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode; api/gunicorn_conf.py sets it up), and /metrics, whichever process answers, adds up
every process's files: a scrape sees the whole API of this host. Without that directory (tests that
build the app in-process) the counts live in this process.

The worker-side request metrics (vllm:*) are not here: workers keep them in Redis and the monitoring
exporter serves them (shared/metrics.py says why).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api import context
from api.auth.guard import public
from api.errors import error_response
from shared import logs

log = logging.getLogger(__name__)
bp = Blueprint("telemetry", __name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself, at import

HTTP_REQUESTS = Counter(
    "torchweave_http_requests", "HTTP requests answered, by route, method and status",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "torchweave_http_request_duration_seconds",
    "Time to answer an HTTP request (for a stream: until its headers go out)",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REJECTED = Counter(
    "torchweave_requests_rejected", "Requests refused with a 4xx, by status and reason (the error code)",
    ["status", "reason"],
)  # fmt: skip
# "liveall": one series per live API process (pid label), as the issue asks "per API process".
STREAMS_OPEN = Gauge(
    "torchweave_streams_open", "Request streams this API process follows now (SSE, WebSocket, OpenAI, and "
    "waits for a whole answer)",
    multiprocess_mode="liveall",
)  # fmt: skip
RELAY_LAG = Histogram(
    "torchweave_relay_lag_seconds",
    "From a worker writing a token event to this API handing it to the client's connection",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def count_rejected(status: int, reason: str) -> None:
    """Count a request refused outside Flask (the connection cap in api/http_worker.py)."""
    REJECTED.labels(str(status), reason).inc()


def _begin() -> None:
    g.tw_started = time.perf_counter()
    # Each request binds its own (None for most routes): a connection's greenlet or thread serves many.
    logs.current_request_id.set((request.view_args or {}).get("request_id"))


def _finish(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    status = response.status_code
    HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
    HTTP_LATENCY.labels(route, request.method).observe(time.perf_counter() - g.get("tw_started", 0.0))
    if 400 <= status < 500:
        code, message = g.get("tw_error", (None, response.status))
        REJECTED.labels(str(status), code or f"http_{status}").inc()
        # The reason goes to the log too, not only to the client: operators see why calls fail.
        # Both may hold what the client sent: escaped and cut short, so a line stays one short line.
        path, said = logs.clip(request.path, 200), logs.clip(message, 300)
        log.warning("%s %s refused %d (%s): %s", request.method, path, status, code, said)
    return response


def install(app: Flask) -> None:
    """Time and count every request; bind the request id its URL names to the lines it logs."""
    app.before_request(_begin)
    app.after_request(_finish)
    app.register_blueprint(bp)


def _is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
@public  # not an API key's business: METRICS_TOKEN guards it, as it guards the exporter
def metrics() -> Response:
    """This host's API metrics in Prometheus's text format. With METRICS_TOKEN set a scrape sends
    `Authorization: Bearer <token>`; without it only loopback clients are answered."""
    token = context.settings().metrics_token
    sent = request.headers.get("Authorization", "")
    if token and not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        response = error_response(401, "a bearer token is required (METRICS_TOKEN)", code="unauthorized")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if not token and not _is_loopback(request.remote_addr):
        return error_response(403, "set METRICS_TOKEN to scrape /metrics from another host", code="forbidden")
    if os.environ.get(MULTIPROC_ENV):  # prometheus_client decides by this variable; we ask it the same
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
