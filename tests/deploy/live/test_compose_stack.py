"""docker-compose.yml, run for real: the image built from the Dockerfile, the stack up until every
healthcheck is healthy, a request streamed with a key, workers scaled to 2, a worker container killed
mid-stream with no token lost or repeated, Redis never published, and `down` within a bound.

The stack serves a local model (./tiny-local under LOCAL_MODELS): the API and workers read it through the
models volume, as a user's own model would be read.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.clients import SseEvent, indexed, iter_sse
from devtools.embedded_redis import free_port
from devtools.servers import wait_for
from shared.settings import PROJECT_ROOT
from tests.deploy.live import docker_host
from tests.deploy.live.conftest import CACHE, compose, record
from tests.deploy.live.docker_host import DockerHost
from workers.builtin_model import ensure_builtin_model

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(3600)]

MODEL = "./tiny-local"
HEALTHY_WITHIN_S = 300  # the workers' start_period is 120 s; their checks run every 15 s
DOWN_WITHIN_S = 30  # idle workers drain at once; the stop grace is 60 s, which a clean stop never reaches


@dataclass
class Stack:
    docker: DockerHost
    env: dict[str, str]
    url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['ADMIN_API_KEY']}"}

    def compose(self, *args: str, timeout: float = 600) -> str:
        return compose(self.docker, self.env, *args, timeout=timeout).stdout

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        ids = self.compose("ps", "-q", *([service] if service else [])).split()
        return [self.docker.inspect(i) for i in ids]


def service_of(container: dict[str, Any]) -> str:
    name: str = container["Config"]["Labels"]["com.docker.compose.service"]
    return name


def unhealthy(stack: Stack) -> list[str]:
    """Containers not (yet) healthy, as service: state."""
    return [
        f"{service_of(c)}: {c['State'].get('Health', {}).get('Status', 'no healthcheck')}"
        for c in stack.containers()
        if c["State"].get("Health", {}).get("Status") != "healthy"
    ]


def wait_healthy(stack: Stack) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while (waiting := unhealthy(stack)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not waiting, (
        f"not healthy after {HEALTHY_WITHIN_S} s: {waiting}\n{stack.compose('logs', '--tail=30')}"
    )


@pytest.fixture(scope="module")
def stack(docker: DockerHost, image: str) -> Iterator[Stack]:
    models = CACHE / "models"
    if not (models / "tiny-local" / "config.json").exists():
        shutil.copytree(ensure_builtin_model(CACHE / "builtin"), models / "tiny-local", dirs_exist_ok=True)
    for path in [models, *models.rglob("*")]:  # the image's user (uid 10001) reads it; mkdtemp made it 0700
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    env = {
        "REDIS_PASSWORD": secrets.token_urlsafe(16),
        "ADMIN_API_KEY": f"tw-admin-{secrets.token_urlsafe(16)}",
        "FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(8)}",
        "METRICS_TOKEN": secrets.token_urlsafe(16),
        "PORT": str(port),
        "FLOWER_PORT": str(free_port()),
        "LOCAL_MODELS": str(models),
        "MODEL": MODEL,
    }
    s = Stack(docker, env, f"http://127.0.0.1:{port}")
    started = time.monotonic()
    s.compose("up", "-d")
    try:
        wait_healthy(s)
        record("up to healthy", time.monotonic() - started)
        yield s
    finally:
        s.compose("down", "-v", "--timeout", "60", timeout=300)


def test_every_healthcheck_turns_healthy_and_redis_is_not_published(stack: Stack) -> None:
    containers = {service_of(c): c for c in stack.containers()}
    assert set(containers) == {"redis", "api", "worker", "flower", "metrics"}
    assert not unhealthy(stack)
    redis = containers["redis"]
    assert stack.docker.docker("port", redis["Id"]).stdout.strip() == ""
    assert not any(redis["NetworkSettings"]["Ports"].values()), redis["NetworkSettings"]["Ports"]
    assert not redis["HostConfig"]["PortBindings"]
    api_ports = containers["api"]["NetworkSettings"]["Ports"]["8000/tcp"]
    assert {b["HostPort"] for b in api_ports} == {stack.env["PORT"]}  # on IPv4 and IPv6


def test_a_request_streams_with_a_key_and_is_refused_without(stack: Stack) -> None:
    body = {"model": MODEL, "prompt": "Compose", "max_new_tokens": 16, "temperature": 0, "ignore_eos": True}
    assert requests.post(f"{stack.url}/v1/requests", json=body, timeout=10).status_code == 401
    events = stream(stack, body)
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 16


def test_prometheus_token_reads_the_api_metrics(stack: Stack) -> None:
    # Prometheus's torchweave-api job sends METRICS_TOKEN; the API refused it (403) when compose left the
    # API without the token.
    token = {"Authorization": f"Bearer {stack.env['METRICS_TOKEN']}"}
    resp = requests.get(f"{stack.url}/metrics", headers=token, timeout=10)
    assert resp.status_code == 200 and "torchweave_http_requests_total" in resp.text


def test_workers_scale_to_two(stack: Stack) -> None:
    scale_workers(stack, 2)
    assert len(stack.containers("worker")) == 2
    assert not unhealthy(stack)


def test_a_worker_container_killed_mid_stream_loses_no_token(stack: Stack) -> None:
    scale_workers(stack, 2)
    max_new = 400  # long enough to outlive the kill; a loaded 2-core machine decodes a few tokens a second
    body = {"model": MODEL, "prompt": "Kill one", "max_new_tokens": max_new, "temperature": 0,
            "ignore_eos": True}  # fmt: skip
    resp = requests.post(f"{stack.url}/v1/requests", json=body, headers=stack.auth, timeout=10)
    assert resp.status_code == 202, resp.text
    sub = resp.json()
    events: list[SseEvent] = []
    victim = ""
    with requests.get(sub["stream_url"], headers=stack.auth, stream=True, timeout=120) as sse:
        assert sse.status_code == 200, sse.text
        for event in iter_sse(sse.iter_lines(delimiter=b"\n")):
            events.append(event)
            if not victim and len(indexed(events)) == 5:
                victim = kill_worker_running(stack, sub["id"])
            if event.event in ("done", "error"):
                break
    events = indexed(events)
    assert victim, "the stream ended before a worker could be killed"
    assert [e.data["index"] for e in events] == list(range(len(events))), "an index repeated or went missing"
    assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == max_new
    status = requests.get(f"{stack.url}/v1/requests/{sub['id']}", headers=stack.auth, timeout=10).json()
    assert status["status"] == "finished", status
    # The request was recovered from the dead worker and claimed again. By which worker is a race: the
    # other container, or the killed one back under its restart policy with the same hostname (and, in
    # its own pid namespace, the same pid), so the worker id cannot tell them apart.
    url = f"{stack.url}/v1/requests/{sub['id']}/timeline"
    steps = requests.get(url, headers=stack.auth, timeout=10).json()["steps"]
    kinds = [s["kind"] for s in steps]
    assert kinds.count("claimed") >= 2, kinds
    requeued = [s for s in steps if s["kind"] == "requeued"]
    assert requeued and requeued[0]["reason"] == "its worker stopped", steps
    assert requeued[0]["worker"].startswith(victim), steps
    # The restart policy brings the killed container back.
    wait_for(lambda: stack.docker.inspect(victim)["RestartCount"] >= 1, 60, "the killed worker's restart")
    wait_healthy(stack)


def test_the_gpu_file_adds_no_service_beside_the_worker(stack: Stack) -> None:
    # `--profile gpu` used to start a GPU worker beside the CPU one; the GPU file only changes `worker`.
    base = [PROJECT_ROOT / "docker-compose.yml"]
    with_gpu = [*base, PROJECT_ROOT / "docker-compose.gpu.yml"]
    assert services(stack, with_gpu) == services(stack, base)
    assert "worker" in services(stack, base)


def services(stack: Stack, files: list[Path]) -> list[str]:
    """`docker-compose config --services` over the files (every profile's services included)."""
    out = subprocess.run(
        [docker_host.COMPOSE, *[a for f in files for a in ("-f", str(f))], "config", "--services"],
        env=stack.docker.env | stack.env, capture_output=True, text=True, timeout=60, check=True,
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    return sorted(out.stdout.split())


def test_down_stops_everything_within_the_bound(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("down", "--timeout", "60", timeout=300)
    took = time.monotonic() - started
    record("down", took)
    assert took < DOWN_WITHIN_S
    assert stack.docker.docker("ps", "-aq").stdout.strip() == ""


def stream(stack: Stack, body: dict[str, Any]) -> list[SseEvent]:
    """Submit with the admin key and read the stream to its end."""
    resp = requests.post(f"{stack.url}/v1/requests", json=body, headers=stack.auth, timeout=10)
    assert resp.status_code == 202, resp.text
    with requests.get(resp.json()["stream_url"], headers=stack.auth, stream=True, timeout=120) as sse:
        assert sse.status_code == 200, sse.text
        return indexed(list(iter_sse(sse.iter_lines(delimiter=b"\n"))))


def scale_workers(stack: Stack, n: int) -> None:
    stack.compose("up", "-d", "--no-recreate", "--scale", f"worker={n}")
    wait_healthy(stack)
    wait_for(
        lambda: sum(w["model"] == MODEL for w in workers(stack)) == n, 120, f"{n} workers serving {MODEL}"
    )


def workers(stack: Stack) -> list[dict[str, Any]]:
    """The live workers serving the stack's model (none while /model answers 503)."""
    resp = requests.get(f"{stack.url}/model", headers=stack.auth, timeout=10)
    found: list[dict[str, Any]] = resp.json()["workers"] if resp.status_code == 200 else []
    return found


def kill_worker_running(stack: Stack, request_id: str) -> str:
    """SIGKILL the main process of the worker container running the request (a crash, which the restart
    policy answers); returns that container's id (its hostname, the first part of the worker id)."""
    status: dict[str, Any] = {}

    def claimed() -> bool:
        status.update(
            requests.get(f"{stack.url}/v1/requests/{request_id}", headers=stack.auth, timeout=5).json()
        )
        return bool(status.get("worker_id"))

    wait_for(claimed, 30, "a worker to claim the request")
    host = status["worker_id"].rsplit("-", 1)[0]
    container = stack.docker.inspect(host)
    os.kill(container["State"]["Pid"], signal.SIGKILL)
    return host
