"""GET /status says where Flower is, so the UI's link follows the settings instead of a fixed port."""

from __future__ import annotations

from typing import Any

import pytest

from api import create_app
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
