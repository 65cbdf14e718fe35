"""The Heroku image, started the way Heroku's container stack starts it: heroku.yml's `run` commands through
/bin/sh -c, one web and one worker dyno of the same image, `$PORT` given to the web dyno, `REDIS_URL` from
the add-on (rediss:// with a self-signed certificate, as Heroku Redis serves it), app.json's config vars
(generated secrets included), and a stop as the dyno manager does it: SIGTERM to every process of the
dyno, SIGKILL 30 s later.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import yaml

from devtools.clients import indexed, iter_sse
from devtools.embedded_redis import free_port
from devtools.servers import wait_for
from devtools.tls_proxy import self_signed
from shared.settings import PROJECT_ROOT
from tests.deploy.live.conftest import record
from tests.deploy.live.docker_host import DockerHost
from tests.deploy.live.standin_images import redis_tag

pytestmark = [pytest.mark.deploy, pytest.mark.timeout(3600)]

SIGKILL_AFTER_S = 30  # Heroku's dyno manager: SIGTERM, then SIGKILL 30 s later


@dataclass
class HerokuApp:
    docker: DockerHost
    config: dict[str, str]  # the app's config vars, as `heroku config` would list them
    url: str  # the web dyno's $PORT, as the router reaches it
    dynos: dict[str, str]  # process type -> container id

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config['ADMIN_API_KEY']}"}


def config_vars() -> dict[str, str]:
    """app.json's env as a Heroku deploy sets it: values as given, a fresh secret for each generator."""
    app = json.loads((PROJECT_ROOT / "app.json").read_text())
    config = {}
    for name, spec in app["env"].items():
        spec = {"value": spec} if isinstance(spec, str) else spec
        config[name] = secrets.token_hex(32) if spec.get("generator") == "secret" else spec.get("value", "")
    return config


@pytest.fixture(scope="module")
def heroku(docker: DockerHost, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HerokuApp]:
    run = yaml.safe_load((PROJECT_ROOT / "heroku.yml").read_text())["run"]
    suffix = secrets.token_hex(3)
    network = f"twheroku-{suffix}"
    docker.docker("network", "create", network)
    tls = tmp_path_factory.mktemp("addon-tls")
    self_signed(tls)
    tls.chmod(0o755)
    password = secrets.token_urlsafe(16)
    addon = f"redis-addon-{suffix}"
    docker.docker(
        "run", "-d", "--name", addon, "--network", network, "-v", f"{tls}:/tls:ro", redis_tag(),
        "redis-server", "--port", "0", "--tls-port", "6379", "--tls-cert-file", "/tls/cert.pem",
        "--tls-key-file", "/tls/key.pem", "--tls-auth-clients", "no", "--requirepass", password,
    )  # fmt: skip
    config = {**config_vars(), "REDIS_URL": f"rediss://:{password}@{addon}:6379"}
    port, host_port = str(free_port()), free_port()
    dynos = {}
    for process_type in ("web", "worker"):
        env = {**config, "DYNO": f"{process_type}.1", **({"PORT": port} if process_type == "web" else {})}
        publish = ["-p", f"127.0.0.1:{host_port}:{port}"] if process_type == "web" else []
        dynos[process_type] = docker.docker(
            "run", "-d", "--name", f"{process_type}.1-{suffix}", "--network", network, *publish,
            *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
            "--entrypoint", "/bin/sh", image, "-c", run[process_type],
        ).stdout.strip()  # fmt: skip
    app = HerokuApp(docker, config, f"http://127.0.0.1:{host_port}", dynos)
    try:
        started = time.monotonic()
        wait_for(lambda: requests.get(f"{app.url}/health/ready", timeout=5).status_code == 200, 180, "ready")
        record("heroku: dynos started to ready", time.monotonic() - started)
        yield app
    finally:
        for name in (*dynos.values(), addon):
            docker.docker("rm", "-f", name, check=False)
        docker.docker("network", "rm", network, check=False)


def test_the_web_dyno_serves_on_port_with_the_addon_redis(heroku: HerokuApp) -> None:
    body = {"prompt": "Heroku", "max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
    assert requests.post(f"{heroku.url}/v1/requests", json=body, timeout=10).status_code == 401
    resp = requests.post(f"{heroku.url}/v1/requests", json=body, headers=heroku.auth, timeout=10)
    assert resp.status_code == 202, resp.text
    with requests.get(resp.json()["stream_url"], headers=heroku.auth, stream=True, timeout=120) as sse:
        events = indexed(list(iter_sse(sse.iter_lines(delimiter=b"\n"))))
    assert [e.data["index"] for e in events] == list(range(len(events)))
    assert events[-1].event == "done" and events[-1].data["usage"]["completion_tokens"] == 12
    for process_type, container in heroku.dynos.items():  # for choosing dyno sizes
        usage = heroku.docker.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).stdout
        print(f"heroku: {process_type} dyno memory {usage.strip()}")


def test_dynos_stop_by_themselves_before_heroku_kills_them(heroku: HerokuApp) -> None:
    for process_type, container in heroku.dynos.items():
        took = stop_like_heroku(heroku.docker, container)
        record(f"heroku: {process_type} dyno stop", took)
        state = heroku.docker.inspect(container)["State"]
        assert took < SIGKILL_AFTER_S and not state["OOMKilled"], f"{process_type} was killed"
        assert state["ExitCode"] == 0, f"{process_type} exited {state['ExitCode']}"


def stop_like_heroku(docker: DockerHost, container: str) -> float:
    """SIGTERM every process of the container (host pids, as `docker top` lists them), SIGKILL whatever is
    left after SIGKILL_AFTER_S; returns the seconds until the container had exited."""
    started = time.monotonic()
    pids = [
        int(line.split()[0]) for line in docker.docker("top", container, "-eo", "pid").stdout.splitlines()[1:]
    ]
    for pid in pids:
        with_pid(pid, signal.SIGTERM)
    deadline = started + SIGKILL_AFTER_S
    while time.monotonic() < deadline and docker.inspect(container)["State"]["Running"]:
        time.sleep(0.2)
    took = time.monotonic() - started
    if docker.inspect(container)["State"]["Running"]:
        docker.docker("kill", container)
    return took


def with_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its parent's signal first
        os.kill(pid, sig)
