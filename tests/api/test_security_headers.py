"""Browsers are told what our pages may do: no framing by other sites, no sniffing, a CSP on each page."""

from __future__ import annotations

from api import create_app
from shared.settings import Settings


def test_pages_refuse_framing_and_every_answer_refuses_sniffing(redis_url: str) -> None:
    client = create_app(Settings(redis_url=redis_url)).test_client()
    for url in ("/ui/", "/ui/monitor", "/docs/"):
        resp = client.get(url)
        assert resp.status_code == 200 and resp.mimetype == "text/html", url
        policy = resp.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy, (url, policy)
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0], url
        assert resp.headers.get("X-Frame-Options") == "DENY", url
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", url
    for url in ("/ui/static/js/login.js", "/health/live", "/v1/nowhere"):
        assert client.get(url).headers.get("X-Content-Type-Options") == "nosniff", url
