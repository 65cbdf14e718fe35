"""Browser sessions: a cookie stands for its key's current secret, for a fixed lifetime, and cannot mint
more of itself; a WebSocket handshake carried by it must come from our origin."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.auth.guard import SESSION_COOKIE
from shared import bus, keys
from shared.messages import BrowserSession
from shared.settings import Settings
from tests.api.test_auth_routes import ADMIN

EVIL = {"Origin": "https://evil.example"}


@pytest.fixture
def app(redis_url: str) -> Flask:
    return create_app(Settings(redis_url=redis_url.rsplit("/", 1)[0] + "/9", admin_api_key=ADMIN))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def open_session(client: FlaskClient, secret: str) -> str:
    """A session opened with a key: the cookie's value (the client keeps it too)."""
    opened = client.post("/v1/auth/session", headers=bearer(secret))
    assert opened.status_code == 200, opened.get_data(as_text=True)
    cookie = client.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    return cookie.value


def with_cookie(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(SESSION_COOKIE, token)
    return client


def test_rotating_admin_api_key_ends_the_old_keys_sessions(app: Flask) -> None:
    token = open_session(app.test_client(), ADMIN)
    old = with_cookie(app, token)
    assert old.get("/v1/auth/whoami").get_json()["key_id"] == "admin"
    # The API restarts with a new ADMIN_API_KEY, on the same Redis.
    rotated = create_app(Settings(redis_url=app.extensions["tw_settings"].redis_url, admin_api_key="tw-new"))
    stale = with_cookie(rotated, token)
    assert stale.get("/v1/auth/whoami").status_code == 401
    assert stale.post("/v1/keys", json={"name": "backdoor", "role": "admin"}).status_code == 401
    assert rotated.test_client().get("/v1/auth/whoami", headers=bearer(ADMIN)).status_code == 401
    # The bootstrap key is revoked by rotating it; asking to revoke it says so instead of "no such key".
    refused = rotated.test_client().delete("/v1/keys/admin", headers=bearer("tw-new"))
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "bootstrap_key"
    assert "ADMIN_API_KEY" in refused.get_json()["error"]["message"]


def test_revoking_a_key_ends_its_sessions(app: Flask) -> None:
    made = app.test_client().post("/v1/keys", json={"name": "erin"}, headers=bearer(ADMIN)).get_json()
    cookies = [with_cookie(app, open_session(app.test_client(), made["secret"])) for _ in range(2)]
    revoked = app.test_client().delete(f"/v1/keys/{made['key_id']}", headers=bearer(ADMIN))
    assert revoked.get_json()["sessions_closed"] == 2
    assert [c.get("/v1/auth/whoami").status_code for c in cookies] == [401, 401]


def test_a_session_cannot_open_sessions_and_ends_at_its_lifetime(app: Flask) -> None:
    made = app.test_client().post("/v1/keys", json={"name": "fay"}, headers=bearer(ADMIN)).get_json()
    client = app.test_client()
    token = open_session(client, made["secret"])
    minted = client.post("/v1/auth/session")  # the cookie alone, as a stolen one would be used
    assert minted.status_code == 403 and "Bearer" in minted.get_json()["error"]["message"]
    kept = client.get_cookie(SESSION_COOKIE)
    assert kept is not None and kept.value == token  # no new cookie came with the refusal
    other = with_cookie(app, open_session(app.test_client(), made["secret"]))
    # Logging out ends this session, on the server; the other one lives on.
    assert client.delete("/v1/auth/session").status_code == 200
    assert with_cookie(app, token).get("/v1/auth/whoami").status_code == 401
    assert other.get("/v1/auth/whoami").status_code == 200
    # A session past its lifetime is over even where Redis still holds it (its TTL is only cleanup).
    r = bus.connect(app.extensions["tw_settings"].redis_url)
    [token_digest] = r.smembers(keys.key_sessions_key(made["key_id"]))  # the other's, this one closed
    name = keys.session_key(str(token_digest))
    record = BrowserSession.model_validate_json(str(r.get(name)))
    r.set(name, record.model_copy(update={"expires_at": time.time() - 1}).model_dump_json(), keepttl=True)
    assert other.get("/v1/auth/whoami").status_code == 401


def test_a_websocket_handshake_with_a_session_must_come_from_our_origin(app: Flask) -> None:
    made = app.test_client().post("/v1/keys", json={"name": "gus"}, headers=bearer(ADMIN)).get_json()
    client = with_cookie(app, open_session(app.test_client(), made["secret"]))
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    refused = client.get("/v1/requests/x/ws", headers={**upgrade, **EVIL})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden_origin"
    assert client.get("/v1/auth/whoami", headers=EVIL).status_code == 200  # a plain read is no handshake
