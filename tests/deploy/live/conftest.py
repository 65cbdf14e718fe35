"""Fixtures of the deployment test (`make test-deploy`, marker `deploy`): a Docker engine of its own, the
stand-in base images (test scaffolding, see standin_images.py), the torch wheel index, and the project's
image built from its Dockerfile by docker-compose. Timings go to .cache/deploy/timings.json."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.settings import PROJECT_ROOT
from tests.deploy.live import docker_host, standin_images
from tests.deploy.live.docker_host import DockerHost
from tests.deploy.live.wheel_index import WheelIndex, find_cpu_wheel

CACHE = PROJECT_ROOT / ".cache" / "deploy"
BUILD_OVERRIDE = Path(__file__).parent / "compose.build.yml"
IMAGE = "torchweave:deploy-test"  # every service's image (compose.build.yml); the Heroku dynos run it too
TIMINGS = CACHE / "timings.json"


def record(name: str, seconds: float) -> None:
    """Keep a timing for the report (printed too, for CI's log)."""
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[name] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
    print(f"deploy timing: {name} = {seconds:.1f} s")


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    if not docker_host.is_installed():
        pytest.skip("needs Debian's docker.io and docker-compose (make test-deploy installs them)")
    if os.geteuid() != 0:
        pytest.skip("dockerd and debootstrap need root")
    TIMINGS.unlink(missing_ok=True)  # this run's timings only
    host = DockerHost(CACHE / "docker", tmp_path_factory.mktemp("dockerd")).start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def torch_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TORCH_INDEX_URL for the build: the CPU wheel on this disk where there is one, else the default."""
    wheel = find_cpu_wheel()
    if wheel is None:
        yield "https://download.pytorch.org/whl/cpu"
        return
    index = WheelIndex(wheel, CACHE / "torch-index", tmp_path_factory.mktemp("index-logs")).start()
    try:
        yield index.url
    finally:
        index.stop()


@pytest.fixture(scope="session")
def image(docker: DockerHost, torch_index: str) -> str:
    """The project's image, built by `docker-compose build` from the unchanged Dockerfile."""
    started = time.monotonic()
    standin_images.ensure_images(docker, CACHE)
    record("stand-in base images", time.monotonic() - started)
    started = time.monotonic()
    compose(docker, {"TORCH_INDEX_URL": torch_index}, "build", timeout=3000)
    record("build", time.monotonic() - started)
    return IMAGE


def compose(
    docker: DockerHost, env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """docker-compose on the project's file plus the build override, as project `twdeploy`."""
    files = ["-f", str(PROJECT_ROOT / "docker-compose.yml"), "-f", str(BUILD_OVERRIDE)]
    # Compose refuses to parse the file without the variables it requires; the build needs none of them.
    required = {"REDIS_PASSWORD": "x", "ADMIN_API_KEY": "x", "FLOWER_BASIC_AUTH": "x:x", "METRICS_TOKEN": "x"}
    out = subprocess.run(
        [docker_host.COMPOSE, "-p", "twdeploy", *files, *args],
        env={**docker.env, **required, **env}, cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(
            f"docker-compose {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
        )
    return out
