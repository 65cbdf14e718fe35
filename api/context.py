"""Accessors for what create_app() attached to the running app."""

from __future__ import annotations

import redis
from celery import Celery
from flask import current_app

from api.hub import StreamHub
from shared.settings import Settings


def settings() -> Settings:
    s: Settings = current_app.extensions["tw_settings"]
    return s


def redis_client() -> redis.Redis:
    r: redis.Redis = current_app.extensions["tw_redis"]
    return r


def hub() -> StreamHub:
    h: StreamHub = current_app.extensions["tw_hub"]
    return h


def celery() -> Celery:
    c: Celery = current_app.extensions["tw_celery"]
    return c
