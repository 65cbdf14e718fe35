"""The Celery broker configuration every process must agree on: the priority lists kombu keeps per
queue, and TLS to a rediss:// broker."""

from __future__ import annotations

import ssl
from typing import Any

from shared import keys
from shared.settings import Settings


def broker_options(settings: Settings) -> dict[str, Any]:
    """kombu Redis transport options: priorities 0 to 9 (0 first) and how long an unacknowledged
    message waits before it is delivered again."""
    return {
        "priority_steps": keys.PRIORITY_STEPS,
        "queue_order_strategy": "priority",
        "visibility_timeout": settings.visibility_timeout_s,
    }


def broker_tls(settings: Settings) -> dict[str, Any]:
    """Celery's broker_use_ssl for a rediss:// broker (an empty dict otherwise): the certificate is
    checked unless REDIS_TLS_VERIFY=0."""
    if not settings.redis_url.startswith("rediss://"):
        return {}
    return {
        "broker_use_ssl": {"ssl_cert_reqs": ssl.CERT_REQUIRED if settings.redis_tls_verify else ssl.CERT_NONE}
    }
