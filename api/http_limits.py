"""Limits at the HTTP layer: a request body must arrive within BODY_TIMEOUT, JSON routes take only
application/json, and (in the gunicorn worker, api/http_worker.py) each client address may hold at
most MAX_CONNECTIONS_PER_CLIENT connections.

A client that trickles its body byte by byte would otherwise hold a connection (and a greenlet)
for as long as it likes; enough of them fill the process's connection cap for everyone.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from api import context
from api.errors import error_response
from api.offload import under_gevent

log = logging.getLogger(__name__)


def _read_body_in_time() -> Response | None:
    """Read the whole body before the view runs, within BODY_TIMEOUT; 408 when it does not arrive."""
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    if not has_body or not under_gevent():
        return None  # the Flask test client and gthread (documented) read without a deadline
    from gevent import Timeout

    timeout_s = context.settings().body_timeout_s
    try:
        with Timeout(timeout_s):
            request.get_data(cache=True)
    except Timeout:
        log.warning("request body from %s did not arrive within %.0f s", request.remote_addr, timeout_s)
        return error_response(408, f"the request body did not arrive within {timeout_s:.0f} s")
    return None


def install(app: Flask) -> None:
    """Read every body under the deadline before its view runs."""
    app.before_request(_read_body_in_time)
