"""With keys on, every route but the public ones answers 401 without a key and with a revoked one, so
a route added later cannot forget auth; admin routes answer 403 to a user key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from api.auth import store
from api.auth.guard import access_of
from shared import bus
from shared.settings import Settings

ADMIN = "tw-test-admin-secret"
PUBLIC = {
    "/metrics",  # not an API key's business: METRICS_TOKEN guards it (tests/e2e/test_metrics.py)
    "/health",
    "/health/live",
    "/health/ready",
    "/",
    "/ui/",
    "/ui/requests/x",
    "/ui/models",
    "/ui/monitor",
}


@pytest.fixture
def app(redis_url: str) -> Iterator[Flask]:
    app = create_app(Settings(redis_url=redis_url.rsplit("/", 1)[0] + "/9", admin_api_key=ADMIN))
    yield app


def concrete(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "x", rule)


def calls(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(method, url, endpoint) of every rule, Swagger UI's own files aside."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("swagger_ui.") or rule.endpoint in ("static", "ui.static"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, concrete(rule.rule), rule.endpoint


def call(client: FlaskClient, method: str, url: str, headers: dict[str, str] | None = None) -> int:
    return client.open(url, method=method, json={} if method == "POST" else None, headers=headers).status_code


def test_every_route_but_the_public_ones_needs_a_key(app: Flask) -> None:
    client = app.test_client()
    r = bus.connect(app.extensions["tw_settings"].redis_url)
    secret, key = store.create(r, "soon revoked", "user", None, None)
    assert store.revoke(r, key.key_id)
    seen = 0
    for method, url, endpoint in calls(app):
        with app.test_request_context():
            is_public = access_of(endpoint) == "public"
        assert is_public == (url in PUBLIC), f"{method} {url}"
        if is_public:
            continue
        assert call(client, method, url) == 401, f"{method} {url} without a key"
        assert call(client, method, url, {"Authorization": f"Bearer {secret}"}) == 401, (
            f"{method} {url} revoked"
        )
        seen += 1
    assert seen >= 20
    assert client.get("/health/live").status_code == 200
    assert client.get("/docs/").status_code == 200  # Swagger UI's files are public; the document is not
    assert client.get("/openapi.json").status_code == 401


def test_admin_routes_answer_403_to_a_user_key(app: Flask) -> None:
    client = app.test_client()
    r = bus.connect(app.extensions["tw_settings"].redis_url)
    secret, _ = store.create(r, "alice", "user", None, None)
    user = {"Authorization": f"Bearer {secret}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for method, url in [
        ("POST", "/v1/models/load"), ("POST", "/v1/models/unload"), ("GET", "/v1/workers"),
        ("GET", "/status"), ("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/x"),
        ("GET", "/v1/models/events"), ("POST", "/v1/generate_nobatch"),
    ]:  # fmt: skip
        assert call(client, method, url, user) == 403, f"{method} {url}"
    assert client.get("/v1/keys", headers=admin).status_code == 200
    assert client.get("/v1/models", headers=user).status_code == 200
    assert client.get("/openapi.json", headers=user).status_code == 200


def test_keys_are_made_listed_and_revoked_over_http_and_never_show_a_secret_twice(app: Flask) -> None:
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    made = client.post("/v1/keys", json={"name": "bob", "rpm": 5}, headers=admin)
    assert made.status_code == 201
    body = made.get_json() or {}
    assert body["secret"].startswith("tw-") and body["role"] == "user" and body["rpm"] == 5
    listed = client.get("/v1/keys", headers=admin).get_data(as_text=True)
    assert body["key_id"] in listed and body["secret"] not in listed
    bob = {"Authorization": f"Bearer {body['secret']}"}
    assert client.get("/v1/auth/whoami", headers=bob).get_json()["name"] == "bob"
    assert client.delete(f"/v1/keys/{body['key_id']}", headers=admin).status_code == 200
    assert client.get("/v1/auth/whoami", headers=bob).status_code == 401


def test_a_session_cookie_stands_for_its_key_and_refuses_other_sites(app: Flask) -> None:
    client = app.test_client()
    r = bus.connect(app.extensions["tw_settings"].redis_url)
    secret, key = store.create(r, "carol", "user", None, None)
    opened = client.post("/v1/auth/session", headers={"Authorization": f"Bearer {secret}"})
    assert opened.status_code == 200
    cookie = opened.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and secret not in cookie
    assert client.get("/v1/auth/whoami").get_json()["key_id"] == key.key_id  # the cookie alone
    foreign = client.post("/v1/requests", json={"prompt": "x"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert client.delete("/v1/auth/session").status_code == 200
    assert client.get("/v1/auth/whoami").status_code == 401


def test_cors_is_same_origin_unless_origins_are_named(redis_url: str) -> None:
    closed = create_app(Settings(redis_url=redis_url)).test_client()
    assert (
        "Access-Control-Allow-Origin"
        not in closed.get("/health", headers={"Origin": "https://a.example"}).headers
    )
    opened = create_app(Settings(redis_url=redis_url, cors_origins=("https://a.example",))).test_client()
    resp = opened.get("/health", headers={"Origin": "https://a.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://a.example"
