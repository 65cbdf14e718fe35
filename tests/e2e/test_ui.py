"""The web UI at /ui/ in a real browser (Debian's chromium), every request outside the server blocked.

A chat answer streams and equals the request's text, Stop cancels, a dropped stream resumes with no lost
or doubled token; the timeline shows the phases in time order, cuts no band's name, and tells a stopped
worker from a lost one; Load shows a progress bar to ready and Unload idles the worker; the monitor's
charts grow while requests run and its Flower link follows FLOWER_PORT; a keyed server asks for a key and
says plainly what needs an admin. No page logs an error, and the screenshots in docs/ui/ come from these
runs (UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from devtools.clients import read_sse, submit
from devtools.servers import Process, start_api, start_worker, wait_for
from shared.settings import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
# The README's screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1); an ordinary run writes
# them to a scratch folder, so running the suite leaves the checkout as it was.
SHOTS = (
    PROJECT_ROOT / "docs" / "ui"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "torchweave-ui-shots"
)
BUILTIN = "torchweave-tiny"
SECOND = "torchweave-tiny2"
ADMIN = "tw-ui-admin-key"
FLOWER_PORT = 5601  # nothing listens there: only the Monitor's link to Flower reads it


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@dataclass
class Tab:
    """One page in its own browser context (cookies, storage), with what it logged and tried to reach."""

    page: Page
    base: str
    expected: tuple[str, ...]  # console errors this test provokes on purpose (Chromium logs each 4xx/5xx)
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Callable[..., Tab]]:
    """Open tabs on a server; at the end, none may have logged an unexpected error or left the server."""
    tabs: list[Tab] = []

    def open_(base: str, expected: tuple[str, ...] = (), color_scheme: Any = "light") -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme=color_scheme)
        tab = Tab(context.new_page(), base, expected)
        tab.page.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"uncaught: {exc}"))

        def only_the_server(route: Route) -> None:
            if route.request.url.startswith(base + "/"):
                route.continue_()
            else:
                tab.outside.append(route.request.url)
                route.abort()

        tab.page.route("**/*", only_the_server)
        tabs.append(tab)
        return tab

    yield open_
    problems = [(t.outside, t.unexpected_errors()) for t in tabs]
    for tab in tabs:
        tab.page.context.close()
    for outside, errors in problems:
        assert outside == [], f"requests outside the server: {outside}"
        assert errors == [], f"console errors: {errors}"


@pytest.fixture(scope="module")
def cluster(
    server_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Two workers on the built-in model (one switches to the second for the models test) and the API,
    on a Redis database of their own. Not the session's live_url: in a whole run, the schemathesis test
    fuzzes /v1/models/load on that worker, which can then spend half a minute failing to fetch a made-up
    Hub id before it serves the built-in model again."""
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/11",
        "MODEL_DIR": str(tmp_path_factory.mktemp("ui_model_dir")),
        "MAX_BATCH": "4",
        "HF_HUB_OFFLINE": "1",
        "FLOWER_PORT": str(FLOWER_PORT),  # not Flower's default: the Monitor's link must follow it
    }
    with ThreadPoolExecutor(2) as pool:  # the two start together: about 8 s instead of 16
        workers = list(pool.map(lambda name: start_worker(env, log_dir, name), ["ui-w1", "ui-w2"]))
    api, url = start_api(env, log_dir)
    procs: list[Process] = [*workers, api]
    yield url
    for proc in procs:  # all stop together: a worker takes seconds to drain
        proc.popen.terminate()
    for proc in procs:
        proc.stop()


def screenshot(page: Page, name: str, height: int = 800) -> None:
    """The viewport into SHOTS; views scroll inside the page, so a taller shot needs a taller window."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": height})
    page.screenshot(path=str(SHOTS / name))
    page.set_viewport_size({"width": 1280, "height": 800})


def record(url: str, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = requests.get(f"{url}/v1/requests/{request_id}", timeout=5).json()
    return body


def ask(page: Page, message: str, max_tokens: int) -> None:
    """Greedy, past EOS (the random model may emit it early), then Enter sends."""
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", str(max_tokens))
    page.check("#chat-ignore-eos")
    page.fill("#chat-input", message)
    page.press("#chat-input", "Enter")


def test_a_chat_answer_streams_to_the_requests_text_and_stop_cancels(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(cluster)
    page = tab.page
    tab.goto("/ui/")
    expect(page.locator("#chat-model")).to_have_value(BUILTIN)
    # Chromium's Layout Instability API: every shift of something already on screen, input or not.
    page.evaluate(
        "() => { window.shifts = []; new PerformanceObserver((list) => window.shifts.push("
        "...list.getEntries().map((e) => e.value))).observe({ type: 'layout-shift' }); }"
    )
    ask(page, "Hello, TorchWeave", 48)
    answer = page.locator("li.msg.assistant").nth(0)
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    rid = answer.get_attribute("data-request-id")
    assert rid
    done = record(cluster, rid)
    assert done["status"] == "finished" and done["usage"]["completion_tokens"] == 48
    assert answer.locator(".text").text_content() == done["text"]
    expect(answer.locator("[data-fact=worker]")).to_contain_text(done["worker_id"])
    expect(answer.locator("[data-fact=ttft]")).to_contain_text("first token")
    expect(answer.get_by_role("link", name="timeline")).to_have_attribute("href", f"/ui/requests/{rid}")
    assert page.evaluate("window.shifts") == []  # no jump: the answer's room was reserved
    screenshot(page, "chat-light.png")
    # The theme button says what a click does, not which theme is on.
    page.get_by_role("button", name="Switch to dark theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("#theme")).to_have_text("Switch to light theme")
    screenshot(page, "chat-dark.png")

    # Stop: a long answer ends as cancelled, showing exactly what was generated before the stop.
    ask(page, "Now tell me everything", 1500)
    long = page.locator("li.msg.assistant").nth(1)
    expect(long).to_have_attribute("data-state", "streaming", timeout=30_000)
    page.get_by_role("button", name="Stop").click()
    expect(long).to_have_attribute("data-state", "cancelled", timeout=30_000)
    cancelled = record(cluster, long.get_attribute("data-request-id") or "")
    assert cancelled["status"] == "cancelled" and cancelled["finish_reason"] == "cancelled"
    assert 0 < cancelled["usage"]["completion_tokens"] < 1500
    assert long.locator(".text").text_content() == cancelled["text"]
    assert page.evaluate("window.shifts") == []  # a long answer grows downwards and moves nothing either

    page.reload()  # the chosen theme is remembered over the system's (light here)
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")


def test_a_dropped_stream_resumes_after_the_last_token_shown(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    # Aborted connections are logged by Chromium as failed loads: those are this test's doing.
    tab = open_tab(cluster, expected=("net::ERR_",))
    page = tab.page
    attempts: list[str] = []
    cut = 20  # the first connection dies halfway through the event with this index

    def flaky(route: Route) -> None:
        attempts.append(route.request.url)
        if len(attempts) == 1:
            body = route.fetch().text()
            end = body.index(f"id: {cut}\n") + len(f"id: {cut}\nevent: tok")
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body[:end])
        elif len(attempts) == 2:
            route.abort()  # and the first reconnect finds no server
        else:
            route.continue_()

    page.route("**/v1/requests/*/stream*", flaky)
    tab.goto("/ui/")
    ask(page, "Resume me", 100)
    answer = page.locator("li.msg.assistant").nth(0)
    expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
    done = record(cluster, answer.get_attribute("data-request-id") or "")
    assert answer.locator(".text").text_content() == done["text"]  # nothing lost, nothing doubled
    assert len(attempts) == 3, attempts
    assert "?" not in attempts[0]
    assert all(a.endswith(f"/stream?from={cut - 1}") for a in attempts[1:]), attempts


def test_the_timeline_shows_the_phases_in_order_and_follows_a_running_request(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    sub = submit(cluster, prompt="timeline, please", max_new_tokens=24, temperature=0, ignore_eos=True)
    read_sse(sub["stream_url"])
    tab = open_tab(cluster)
    page = tab.page
    tab.goto(f"/ui/requests/{sub['id']}")
    expect(page.locator("#timeline-summary [data-status]")).to_have_attribute("data-status", "finished")
    kinds = page.locator("#timeline-steps li").evaluate_all("items => items.map(i => i.dataset.kind)")
    phases = ["submitted", "claimed", "admitted", "first_token", "finished"]
    assert [k for k in kinds if k in phases] == phases
    worker = record(cluster, sub["id"])["worker_id"]
    for kind in ("claimed", "admitted", "first_token", "finished"):
        expect(page.locator(f"#timeline-steps li[data-kind={kind}]")).to_contain_text(worker)
    recorded = requests.get(f"{cluster}/v1/requests/{sub['id']}/timeline", timeout=5).json()
    tokens = recorded["tokens"]
    expect(page.locator("#timeline-tokens")).to_have_attribute("data-points", str(len(tokens)))
    expect(page.locator("#timeline-track .band.decoding")).to_have_count(1)
    assert_band_names_fit(page)
    # One first-token time: its place on the axis is the TTFT shown beside it (to the millisecond shown).
    [ttft_s] = [step["ttft_s"] for step in recorded["steps"] if step["kind"] == "first_token"]
    shown = page.locator("#timeline-steps li[data-kind=first_token] .at").text_content() or ""
    assert abs(float(shown.strip("+ s")) - ttft_s) <= 0.001, (shown, ttft_s)
    screenshot(page, "timeline.png")

    # A request still running: the page reads it again every second, so it sees the cancel happen.
    sub = submit(cluster, prompt="a long one", max_new_tokens=1500, temperature=0, ignore_eos=True)
    wait_for(lambda: record(cluster, sub["id"])["status"] == "running", 30, "the long request running")
    tab.goto(f"/ui/requests/{sub['id']}")
    status = page.locator("#timeline-summary [data-status]")
    expect(status).to_have_attribute("data-status", "running")
    assert requests.delete(f"{cluster}/v1/requests/{sub['id']}", timeout=5).status_code in (200, 202)
    expect(status).to_have_attribute("data-status", "cancelled", timeout=15_000)
    expect(page.locator("#timeline-steps li[data-kind=cancelled]")).to_have_count(1)


def show_recorded_timeline(
    tab: Tab, cluster: str, rid: str, steps: list[tuple[str, float, dict[str, Any]]], at: list[float]
) -> Page:
    """Open the timeline page of `rid` answered with these recorded steps and token times (seconds after
    the request was created), one token per time; the page once it has drawn them."""
    t0 = 1000.0
    body = {
        "id": rid, "model": BUILTIN, "status": "finished", "created_at": t0,
        "tokens": [[i + 1, t0 + t, 1] for i, t in enumerate(at)],
        "steps": [{"kind": kind, "at": t0 + t, **details} for kind, t, details in steps],
    }  # fmt: skip
    page = tab.page
    page.route(f"{cluster}/v1/requests/{rid}/timeline", lambda route: route.fulfill(json=body))
    tab.goto(f"/ui/requests/{rid}")
    expect(page.locator("#timeline-summary [data-status]")).to_have_attribute("data-status", "finished")
    return page


def test_a_timeline_shows_a_hand_off_after_a_worker_died(cluster: str, open_tab: Callable[..., Tab]) -> None:
    """The page draws what the server records after a SIGKILL (as tests/e2e/test_recovery.py produces
    it): decoding on w1 until its last token, "worker lost" until the requeue, then decoding again on
    w2 from its first token; no prefill band for the resumed request, whose tokens were all sent."""
    rid = "f" * 32
    w1: dict[str, Any] = {"worker": "w1"}
    w2: dict[str, Any] = {"worker": "w2"}
    steps: list[tuple[str, float, dict[str, Any]]] = [
        ("submitted", 0.01, {}), ("claimed", 0.1, w1), ("admitted", 0.11, {**w1, "step": 1}),
        ("first_token", 0.2, {**w1, "ttft_s": 0.2}),
        ("requeued", 3.0, {**w1, "reason": "its worker stopped"}),
        ("claimed", 3.1, w2), ("admitted", 3.2, {**w2, "step": 1}),
        ("finished", 5.0, {**w2, "finish_reason": "length", "tokens": 40}),
    ]  # fmt: skip
    # Tokens 1-20 on w1 from 0.2 s to 1.15 s, then 21-40 on w2 from 3.4 s.
    at = [0.2 + 0.05 * i for i in range(20)] + [3.4 + 0.08 * i for i in range(20)]
    page = show_recorded_timeline(open_tab(cluster), cluster, rid, steps, at)
    track = page.locator("#timeline-track .band")
    classes = track.evaluate_all("bands => bands.map(b => b.className)")
    assert classes == [
        "band waiting", "band claimed", "band prefill", "band decoding", "band worker-lost", "band waiting",
        "band claimed", "band prefill", "band decoding",
    ]  # fmt: skip
    lost = page.locator("#timeline-track .band.worker-lost")
    expect(lost).to_have_attribute("title", "worker lost: 1.85 s")  # from w1's last token to the requeue
    resumed = page.locator("#timeline-track .band.decoding").nth(1)
    expect(resumed).to_have_attribute("title", "decoding on w2: 1.60 s")  # from w2's first token (3.4 s)
    assert_band_names_fit(page)


def assert_band_names_fit(page: Page) -> None:
    """Every band's name is either whole inside its band or not shown; the legend names each colour."""
    cut = page.locator("#timeline-track .band").evaluate_all(
        "bands => bands.filter(b => { const s = b.querySelector('span'); return s.checkVisibility()"
        " && s.offsetLeft + s.offsetWidth > b.clientWidth; }).map(b => b.className)"
    )
    assert cut == []
    drawn = page.locator("#timeline-track .band").evaluate_all("bands => bands.map(b => b.dataset.phase)")
    named = page.locator("#timeline-legend li").evaluate_all("items => items.map(i => i.textContent)")
    assert named == list(dict.fromkeys(drawn))


def test_a_timeline_across_a_stop_shows_the_drain_in_time_order(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    """The server stopped with the request running on w1, which said it was draining but was stopped
    before it handed the request back; after the restart the reaper requeued it and w2 finished it. The
    steps come in the order Redis got them (w2's claim before the requeue), the page lists them by time,
    and the gap is "worker stopped", not "worker lost"."""
    rid = "e" * 32
    w1: dict[str, Any] = {"worker": "w1"}
    w2: dict[str, Any] = {"worker": "w2"}
    steps: list[tuple[str, float, dict[str, Any]]] = [
        ("submitted", 0.01, {}), ("claimed", 0.1, w1), ("admitted", 0.11, {**w1, "step": 1}),
        ("first_token", 0.2, {**w1, "ttft_s": 0.2}), ("draining", 2.0, {**w1, "timeout_s": 30.0}),
        ("claimed", 60.1, w2), ("requeued", 60.0, {**w1, "reason": "its worker stopped"}),
        ("admitted", 60.2, {**w2, "step": 1}), ("finished", 62.0, {**w2, "finish_reason": "length"}),
    ]  # fmt: skip
    at = [0.2 + 0.1 * i for i in range(24)] + [60.4 + 0.1 * i for i in range(16)]  # w1 decodes to 2.5 s
    page = show_recorded_timeline(open_tab(cluster), cluster, rid, steps, at)
    kinds = page.locator("#timeline-steps li").evaluate_all("items => items.map(i => i.dataset.kind)")
    assert kinds == [
        "submitted", "claimed", "admitted", "first_token", "draining", "requeued", "claimed", "admitted",
        "finished",
    ]  # fmt: skip
    classes = page.locator("#timeline-track .band").evaluate_all("bands => bands.map(b => b.className)")
    assert classes == [
        "band waiting", "band claimed", "band prefill", "band decoding", "band draining",
        "band worker-stopped", "band waiting", "band claimed", "band prefill", "band decoding",
    ]  # fmt: skip
    # From w1's last token (2.5 s) to the requeue (60 s).
    stopped = page.locator("#timeline-track .band.worker-stopped")
    expect(stopped).to_have_attribute("title", "worker stopped: 57.5 s")
    assert_band_names_fit(page)  # 10 ms of "claimed" on a 62 s axis: too narrow for its name
    expect(page.locator("#timeline-track .band.claimed span").first).to_be_hidden()
    screenshot(page, "timeline-stop.png")


def test_the_monitor_charts_grow_while_requests_run(cluster: str, open_tab: Callable[..., Tab]) -> None:
    tab = open_tab(cluster)
    page = tab.page
    tab.goto("/ui/monitor")
    points = "n => Number(document.querySelector(n[0]).dataset[n[1]]) > n[2]"
    page.wait_for_function(points, arg=["#chart-tokens", "points", 1])
    # Ten long requests on 2 workers x 4 slots: every slot busy, and two wait in the queue.
    subs = [submit(cluster, prompt=f"monitor {i}", max_new_tokens=1500, ignore_eos=True) for i in range(10)]
    try:
        page.wait_for_function(points, arg=["#chart-tokens", "peak", 0], timeout=30_000)  # tokens/s > 0
        page.wait_for_function(points, arg=["#chart-queue", "peak", 0], timeout=30_000)  # a queue
        page.wait_for_function(points, arg=["#chart-ttft", "peak", 0], timeout=30_000)  # a TTFT sample
        grown = int(page.locator("#chart-tokens").get_attribute("data-points") or 0)
        page.wait_for_function(points, arg=["#chart-tokens", "points", grown])
        for chart in ("#chart-tokens", "#chart-queue", "#chart-slots", "#chart-ttft"):
            expect(page.locator(f"{chart} canvas")).to_have_count(1)
        workers = requests.get(f"{cluster}/v1/workers", timeout=5).json()["workers"]
        assert len(workers) == 2
        for worker in workers:
            row = page.locator(f"#monitor-workers tr[data-worker='{worker['worker_id']}']")
            expect(row).to_contain_text("ready")
        flower = f"{cluster.rsplit(':', 1)[0]}:{FLOWER_PORT}/"
        expect(page.locator("#flower-link")).to_have_attribute("href", flower)
        screenshot(page, "monitor.png", height=920)
    finally:
        for s in subs:
            requests.delete(f"{cluster}/v1/requests/{s['id']}", timeout=5)


def test_every_view_opens_from_the_keyboard_and_the_back_button(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(cluster, color_scheme="dark")
    page = tab.page
    tab.goto("/ui/")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")  # the system's, until one is picked
    expect(page.locator("#theme")).to_have_text("Switch to light theme")
    for name, path, view in [("Models", "/ui/models", "models"), ("Monitor", "/ui/monitor", "monitor"),
                             ("Chat", "/ui/", "chat")]:  # fmt: skip
        page.get_by_role("link", name=name, exact=True).focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(cluster + path)
        expect(page.locator(f"#view-{view}")).to_be_visible()
        expect(page.locator(f"#view-{view} h1")).to_be_focused()  # focus follows to the new view
        expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute("aria-current", "page")
    # Escape stops an answer, wherever the focus is.
    ask(page, "Stop me with Escape", 1500)
    answer = page.locator("li.msg.assistant").nth(0)
    expect(answer).to_have_attribute("data-state", "streaming", timeout=30_000)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(answer).to_have_attribute("data-state", "cancelled", timeout=30_000)
    expect(page.locator("#chat-input")).to_be_focused()
    page.go_back()
    expect(page.locator("#view-monitor")).to_be_visible()
    page.wait_for_function("Number(document.querySelector('#chart-slots').dataset.points) > 0")


def test_load_shows_progress_to_ready_and_unload_idles_the_worker(
    cluster: str, open_tab: Callable[..., Tab]
) -> None:
    tab = open_tab(cluster, expected=("status of 503",))  # the Hub search below, with no network
    page = tab.page
    tab.goto("/ui/models")
    expect(page.locator(f"tr[data-model='{BUILTIN}']")).to_have_attribute("data-state", "ready")
    expect(page.locator("#models-live")).to_have_attribute("data-feed", "open")  # no progress can be missed
    page.fill("#load-model", SECOND)
    page.locator("#load-form").get_by_role("button", name="Load").click()
    row = page.locator(f"tr[data-model='{SECOND}']")
    expect(row).to_have_attribute("data-state", "ready", timeout=90_000)
    bar = row.locator("progress[data-state=ready]")
    expect(bar).to_have_count(1)
    assert bar.evaluate("b => b.value") == 100
    loader = bar.get_attribute("data-worker")
    expect(page.locator("#models-status")).to_have_text(f"{SECOND}: ready on {loader}")
    # The bar went through the load: the page saw it part-way, as the event log shows.
    seen = page.locator("#models-log li[data-state=loading]").evaluate_all(
        "items => items.map(i => Number(i.dataset.progress))"
    )
    assert any(0 < p < 100 for p in seen), seen
    screenshot(page, "models.png", height=860)

    row.get_by_role("button", name=f"Unload {SECOND}").click()
    expect(row).to_have_attribute("data-state", "unloaded", timeout=60_000)
    expect(page.locator("#models-status")).to_have_text(f"{SECOND}: unloaded on {loader}")

    def loader_state() -> str:
        workers = requests.get(f"{cluster}/v1/workers", timeout=5).json()["workers"]
        return str(next(w["state"] for w in workers if w["worker_id"] == loader))

    wait_for(lambda: loader_state() == "idle", 30, "the unloaded worker idle")
    # The Monitor shows no device for a worker with no model (not "()").
    page.get_by_role("link", name="Monitor", exact=True).click()
    idle = page.locator(f"#monitor-workers tr[data-worker='{loader}']")
    expect(idle).to_contain_text("idle")
    expect(idle.locator("td").nth(3)).to_have_text("\N{EN DASH}")
    page.get_by_role("link", name="Models", exact=True).click()

    # Hub search with no network: the server's reason, as it said it.
    page.fill("#hub-query", "llama")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#hub-error")).to_contain_text("Hugging Face Hub cannot be reached", timeout=30_000)


@pytest.fixture(scope="module")
def keyed_api(server_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """An API with keys on (no worker: nothing here generates), on a Redis database of its own."""
    env = {
        **server_env,
        "REDIS_URL": server_env["REDIS_URL"].rsplit("/", 1)[0] + "/12",
        "ADMIN_API_KEY": ADMIN,
    }
    proc, url = start_api(env, log_dir)
    yield url
    proc.stop()


def test_a_keyed_server_asks_for_a_key_and_says_what_needs_an_admin(
    keyed_api: str, open_tab: Callable[..., Tab]
) -> None:
    made = requests.post(
        f"{keyed_api}/v1/keys",
        json={"name": "ui-user"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    tab = open_tab(keyed_api, expected=("status of 401", "status of 403"))
    page = tab.page
    tab.goto("/ui/monitor")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-key", "tw-not-a-key")
    page.press("#login-key", "Enter")
    expect(page.locator("#login-error")).to_contain_text("unknown or revoked")
    screenshot(page, "login.png")
    page.fill("#login-key", made.json()["secret"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_have_text("ui-user (user)")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "tw_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # Admin-only views and actions answer 403 to a user key: the page says so in the server's words,
    # and on the Monitor that message stands alone, with no empty chart frames under it.
    expect(page.locator("#monitor-error")).to_contain_text("needs an admin key")
    expect(page.locator("#view-monitor .chart")).to_have_count(4)
    for chart in page.locator("#view-monitor .chart").all():
        expect(chart).to_be_hidden()
    expect(page.locator("#monitor-workers")).to_be_hidden()
    screenshot(page, "monitor-user.png")
    page.get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("#models-live")).to_contain_text("needs an admin key")
    page.fill("#load-model", SECOND)
    page.locator("#load-form").get_by_role("button", name="Load").click()
    expect(page.locator("#models-status")).to_contain_text("needs an admin key")
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#login")).to_be_visible()
    gone = requests.get(f"{keyed_api}/v1/auth/whoami", cookies={"tw_session": cookie["value"]}, timeout=5)
    assert gone.status_code == 401  # logging out closed the session on the server, not only in the page
