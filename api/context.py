"""Accessors for what create_app() attached to the running app."""

from __future__ import annotations

import redis
from celery import Celery
from flask import current_app

from api.streaming.fanout import StreamFanout
from shared.settings import Settings


def settings() -> Settings:
    s: Settings = current_app.extensions["tw_settings"]
    return s


def redis_client() -> redis.Redis:
    r: redis.Redis = current_app.extensions["tw_redis"]
    return r


def fanout() -> StreamFanout:
    """The process's one reader of token streams (api/streaming/fanout.py)."""
    f: StreamFanout = current_app.extensions["tw_fanout"]
    return f


def celery() -> Celery:
    c: Celery = current_app.extensions["tw_celery"]
    return c
