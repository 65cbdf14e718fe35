"""A client of the session's real Redis for the shared/ tests, on a database of their own.

No worker lives on that database, so no reaper races the tests for the leases they expire.
"""

from __future__ import annotations

import pytest
import redis

from shared import bus


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return bus.connect(redis_url.rsplit("/", 1)[0] + "/5")
