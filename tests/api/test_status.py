"""GET /status says where Flower is, so the UI's link follows the settings instead of a fixed port, and how
Redis's memory stands; an API started on a Redis that may evict keys warns at once."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from api import create_app
from devtools.embedded_redis import EmbeddedRedis
from shared import bus
from shared.settings import Settings

URL = "https://ops.example.org/flower/"


@pytest.mark.parametrize(
    ("flower", "expected"),
    [
        ({}, {"url": None, "port": 5555}),  # the UI links to port 5555 of the host it was loaded from
        ({"flower_port": 5601}, {"url": None, "port": 5601}),
        ({"flower_url": URL}, {"url": URL, "port": 5555}),  # behind a proxy, say
    ],
)
def test_status_names_flower_from_the_settings(
    redis_url: str, flower: dict[str, Any], expected: dict[str, Any]
) -> None:
    app = create_app(Settings(redis_url=redis_url.rsplit("/", 1)[0] + "/9", **flower))  # keys off: an admin
    response = app.test_client().get("/status")
    assert response.status_code == 200, response.json
    assert response.json is not None and response.json["flower"] == expected


def test_status_shows_redis_memory_and_keys(redis_url: str) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/9"
    r = bus.connect(url)
    r.set(f"tw:test:{uuid.uuid4().hex}", "x")
    response = create_app(Settings(redis_url=url)).test_client().get("/status")
    assert response.status_code == 200, response.json
    shown = response.json["redis"] if response.json else {}
    info = r.info("memory")
    assert 0 < shown["used_bytes"] <= shown["peak_bytes"] <= info["used_memory_peak"]
    assert shown["maxmemory_bytes"] == info["maxmemory"]
    assert shown["policy"] == "noeviction" and shown["warning"] is None
    assert shown["keys"] == r.dbsize() >= 1


def test_an_evicting_redis_is_warned_about_at_start_and_on_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", maxmemory_policy="allkeys-lru").start()
    try:
        with caplog.at_level(logging.WARNING):
            app = create_app(Settings(redis_url=server.url))
        warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
        assert any("maxmemory-policy is 'allkeys-lru'" in w and "noeviction" in w for w in warnings), warnings
        shown = app.test_client().get("/status").json
        assert shown is not None and shown["redis"]["policy"] == "allkeys-lru"
        assert "Celery" in shown["redis"]["warning"]
    finally:
        server.stop()
