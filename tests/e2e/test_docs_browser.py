"""Swagger UI at /docs renders in a real browser (Debian's chromium) with every outside request blocked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Route, sync_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def test_docs_render_offline(live_url: str, browser: Browser) -> None:
    page = browser.new_page()
    outside: list[str] = []

    def only_loopback(route: Route) -> None:
        if route.request.url.startswith(live_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    refused: list[str] = []  # what the page's Content-Security-Policy blocked, as chromium reports it
    page.on(
        "console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    opened = page.goto(f"{live_url}/docs/")
    page.get_by_text("/v1/chat/completions", exact=True).wait_for(timeout=20_000)
    assert page.locator(".opblock").count() >= 8  # one block per operation of the document
    assert outside == []
    assert opened is not None and "frame-ancestors 'none'" in opened.headers["content-security-policy"]
    assert refused == []
    page.close()
