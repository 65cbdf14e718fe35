"""docker-compose.yml is valid Compose and production-shaped: Redis never published and password-protected,
every service with a healthcheck and a restart policy, workers given longer to stop than they drain."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from devtools.servers import VENV_BIN
from shared.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def seconds(duration: str) -> float:
    """A Compose duration (1m30s, 60s, 500ms) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def test_the_file_validates_against_the_compose_specification() -> None:
    out = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_redis_is_private_and_persistent() -> None:
    redis = compose()["services"]["redis"]
    assert "ports" not in redis and "network_mode" not in redis
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "--appendonly yes" in command
    assert "${REDIS_PASSWORD" in compose()["x-env"]["REDIS_URL"]


def test_every_service_has_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in compose()["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), (
            f"{name} is not restarted"
        )


def test_workers_get_longer_to_stop_than_they_drain() -> None:
    spec = compose()
    drain = float(spec["x-env"]["DRAIN_TIMEOUT"])
    for name in ("worker", "worker-gpu"):
        assert seconds(spec["services"][name]["stop_grace_period"]) > drain + 10, name


def test_scaling_workers_needs_no_fixed_name_or_port_and_the_gpu_profile_reserves_a_gpu() -> None:
    services = compose()["services"]
    for name in ("worker", "worker-gpu"):
        assert "container_name" not in services[name] and "ports" not in services[name]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "cu" in gpu["build"]["args"]["TORCH_INDEX_URL"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_only_the_api_listens_beyond_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert name == "api" or str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_the_image_runs_as_a_user_and_its_build_context_leaves_the_virtualenv_out() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert ".venv/" in ignored and ".cache/" in ignored and ".git/" in ignored


def test_compose_reads_the_same_commands_as_the_procfile() -> None:
    procfile = dict(line.split(": ", 1) for line in (PROJECT_ROOT / "Procfile").read_text().splitlines())
    services = compose()["services"]
    assert " ".join(services["worker"]["command"]) == procfile["worker"]
    assert " ".join(services["api"]["command"]) == procfile["web"]
