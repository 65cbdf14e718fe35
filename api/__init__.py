"""The HTTP API: accepts prompts, enqueues them by task name, relays token streams from Redis.

It never imports workers/ or torch: everything it knows of the workers comes through shared/.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import Flask
from flask_cors import CORS

from api import cluster, errors, health, http_limits, openapi, security_headers, telemetry
from api.auth import guard
from api.auth import routes as auth
from api.generation import charges
from api.generation import routes as generation
from api.models import routes as models
from api.openai import routes as openai
from api.openai import tokenize
from api.streaming import routes as streaming
from api.streaming.fanout import StreamFanout
from api.streaming.websocket import MAX_MESSAGE_BYTES
from api.ui import routes as ui
from shared import bus, redis_memory
from shared.broker_options import broker_options, broker_tls
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app with its Redis client, its Celery client and every blueprint."""
    s = settings or get_settings()
    app = Flask(__name__)
    # WebSocket pings keep idle streams open through proxies, as SSE comments do.
    app.config.update(
        MAX_CONTENT_LENGTH=1024 * 1024,
        SOCK_SERVER_OPTIONS={"ping_interval": s.sse_heartbeat_s, "max_message_size": MAX_MESSAGE_BYTES},
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["tw_settings"] = s
    app.extensions["tw_redis"] = bus.connect(s.redis_url, s.redis_tls_verify)
    redis_memory.check_eviction_policy(app.extensions["tw_redis"], log)
    app.extensions["tw_fanout"] = StreamFanout(app.extensions["tw_redis"])
    celery = Celery("torchweave-api", broker=s.redis_url)
    celery.conf.update(
        broker_connection_retry_on_startup=True,
        task_send_sent_event=True,
        broker_transport_options=broker_options(s),
        **broker_tls(s),
    )
    app.extensions["tw_celery"] = celery
    if s.cors_origins:  # same-origin only unless origins are named (the UI is served from here)
        CORS(app, origins=list(s.cors_origins), expose_headers=["X-Request-Id", "Retry-After"])
    errors.register(app)
    security_headers.install(app)
    telemetry.install(app)  # first: it times the request and binds its id before the guard may refuse it
    guard.install(app)  # before the body is read: a caller without a key is turned away at once
    http_limits.install(app)
    charges.install(app)
    for blueprint in (
        health.bp,
        auth.bp,
        cluster.bp,
        generation.bp,
        streaming.bp,
        openai.bp,
        tokenize.bp,
        models.bp,
        openapi.bp,
        openapi.docs_blueprint(),
        ui.bp,
    ):
        app.register_blueprint(blueprint)
    return app
