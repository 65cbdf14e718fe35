"""Debian's Prometheus for the tests and the README's chart: the shipped config, pointed at loopback
targets, run as a child process on a free port with its storage in a temporary directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from devtools.embedded_redis import free_port
from devtools.servers import Process, wait_for
from shared.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "monitoring" / "prometheus"
CONFIG = SHIPPED / "prometheus.yml"
RULES = SHIPPED / "alerts.yml"


def is_installed() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def local_config(work_dir: Path, targets: dict[str, str], token: str, interval: str = "1s") -> Path:
    """The shipped config with each job's targets replaced (job name -> a /metrics URL), its token
    file written, and a short scrape interval; returns its path."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(SHIPPED / name) for name in config["rule_files"]]
    token_file = work_dir / "metrics_token"
    token_file.write_text(token)
    for job in config["scrape_configs"]:
        url = urlsplit(targets[job["job_name"]])
        job["authorization"]["credentials_file"] = str(token_file)
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [url.netloc]}]
        job["metrics_path"] = url.path
    path = work_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    """A running Prometheus; stop() ends it by its pid."""

    def __init__(self, config: Path, work_dir: Path, log_dir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        cmd = [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        self.proc = Process(f"prometheus-{port}", cmd, {}, log_dir)
        wait_for(lambda: requests.get(f"{self.url}/-/ready", timeout=2).ok, 60, "Prometheus", self.proc)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        resp.raise_for_status()
        result: list[dict[str, Any]] = resp.json()["data"]["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query's result matrix."""
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        resp = requests.get(f"{self.url}/api/v1/query_range", params=params, timeout=30)
        resp.raise_for_status()
        result: list[dict[str, Any]] = resp.json()["data"]["result"]
        return result

    def stop(self) -> None:
        self.proc.stop()
