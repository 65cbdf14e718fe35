"""The Redis broker transport, hardened against losing Redis while tasks run.

When Redis goes away, Celery closes the broken connection; kombu (5.7 with redis-py 8) then
reaches for a client through that closed connection, to put unacknowledged messages back or
to acknowledge a task that just ended, and the AttributeError it meets is fatal to the worker.
Here those paths fail as connection errors, which Celery logs and rides out. Nothing is lost:
an unacknowledged message comes back after the (short) visibility timeout, and a redelivered
message whose request is already claimed is dropped at once.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


def _as_connection_error(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except AttributeError as exc:  # the channel's connection is already closed
        raise redis.ConnectionError(f"broker connection closed: {exc}") from exc


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag: Any) -> None:
        _as_connection_error(super().ack, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        _as_connection_error(super().reject, delivery_tag, requeue)

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        return _as_connection_error(lambda: super(QoS, self).restore_visible(*args, **kwargs))


class Channel(kombu_redis.Channel):
    QoS = QoS
    do_restore = False  # no restore through a closed connection at close; the visibility timeout restores


class Transport(kombu_redis.Transport):
    Channel = Channel
