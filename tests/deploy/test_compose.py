"""docker-compose.yml is valid Compose and production-shaped: Redis never published and password-protected,
every service with a healthcheck and a restart policy, workers given longer to stop than they drain, every
target Prometheus scrapes given the token, local models mounted. tests/deploy/live runs the stack."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from api import create_app
from devtools.servers import VENV_BIN
from shared.settings import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
COMPOSE_GPU = PROJECT_ROOT / "docker-compose.gpu.yml"


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def seconds(duration: str) -> float:
    """A Compose duration (1m30s, 60s, 500ms) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration))


def mount_target(volume: str) -> str:
    """The container path of a short-syntax volume (SOURCE:TARGET[:MODE]; SOURCE may hold ${VAR:-x})."""
    return "/" + volume.split(":/", 1)[1].split(":")[0]


def test_the_files_validate_against_the_compose_specification() -> None:
    out = subprocess.run(
        [str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE),
         str(COMPOSE_GPU)],
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
    assert seconds(spec["services"]["worker"]["stop_grace_period"]) > drain + 10


def test_scaling_workers_needs_no_fixed_name_or_port() -> None:
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker


def test_gpu_workers_replace_the_cpu_worker_rather_than_join_it() -> None:
    # A GPU profile beside the CPU worker started both; the GPU file turns the one worker service into a
    # CUDA one, so `--scale worker=N` counts GPU workers.
    assert not any(s.get("profiles") == ["gpu"] for s in compose()["services"].values())
    gpu = compose(COMPOSE_GPU)["services"]
    assert set(gpu) == {"worker"}
    assert gpu["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


# PyPI's Linux torch wheel per pin, and the CUDA it is built for (its metadata's cuda-toolkit), checked by
# hand: a new pin fails here until someone checks that PyPI's wheel of it is a CUDA build, and which.
PYPI_TORCH_CUDA = {"2.13.0": "13.0"}


def test_the_gpu_build_takes_a_cuda_torch_that_exists_for_the_pin() -> None:
    # cu124 (the old index) has no build of torch 2.13.0. PyPI carries every release.
    pin = re.search(r'"torch==([^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text())
    assert pin, "torch is pinned in pyproject.toml"
    assert pin.group(1) in PYPI_TORCH_CUDA, f"check PyPI's torch=={pin.group(1)} Linux wheel's CUDA"
    build = compose(COMPOSE_GPU)["services"]["worker"]["build"]
    assert build["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    cuda = f"CUDA {PYPI_TORCH_CUDA[pin.group(1)]}"
    for path in (COMPOSE_GPU, PROJECT_ROOT / "Dockerfile", PROJECT_ROOT / "README.md"):
        assert cuda in path.read_text(), f"{path.name} names {cuda} for torch {pin.group(1)}"


def test_prometheus_has_the_token_of_every_target_it_scrapes() -> None:
    # Prometheus sends METRICS_TOKEN to each job; a target without it answers 403 and its panels stay empty.
    prometheus = yaml.safe_load((PROJECT_ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in prometheus["scrape_configs"]:
        assert job["authorization"]["credentials_file"] == "/prometheus/metrics_token", job["job_name"]
        targets |= {t.split(":")[0] for sc in job.get("static_configs", []) for t in sc["targets"]}
        targets |= {name for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    services = compose()["services"]
    assert targets == {"metrics", "api"}
    for name in targets:
        assert "${METRICS_TOKEN" in str(services[name]["environment"].get("METRICS_TOKEN")), name


def test_the_api_healthcheck_probes_liveness_which_answers_without_redis_or_a_worker() -> None:
    # /health is readiness (503 until a worker serves): as the healthcheck it marked a running API sick.
    command = compose()["services"]["api"]["healthcheck"]["test"]
    path = re.search(r"http://127\.0\.0\.1:8000(/[^'\"]*)", " ".join(command))
    assert path, command
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    assert app.test_client().get(path.group(1)).status_code == 200


def test_local_models_reach_the_api_and_workers_under_model_dir() -> None:
    # models/ stays out of the image (.dockerignore); a volume brings it where MODEL_DIR points.
    spec = compose()
    model_dir = spec["x-env"]["MODEL_DIR"]
    assert "models/" in (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert f"MODEL_DIR={model_dir}" in (PROJECT_ROOT / "Dockerfile").read_text().replace(" ", "")
    for name in ("api", "worker"):
        service = spec["services"][name]
        assert service["environment"]["MODEL_DIR"] == model_dir, name
        assert model_dir in [mount_target(v) for v in service["volumes"]], name


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
