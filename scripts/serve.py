"""`make run`: an embedded Redis (unless REDIS_URL is set), then the Procfile's processes under supervisord.

A process that dies is restarted (one that keeps dying at start is given up on, and its last lines
are shown); Ctrl-C or SIGTERM stops the workers first (they drain), then the rest, then Redis.
Each process's output is shown with its name, and kept in CACHE_DIR/run/logs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.embedded_redis import EmbeddedRedis
from devtools.supervision import read_procfile, render
from shared import bus, redis_memory
from shared.settings import PROJECT_ROOT, get_settings

POLL_S = 0.2
log = logging.getLogger("serve")


def announce_when_ready(base: str, flower: str, metrics: str, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            continue
    else:
        return
    print(
        f"\n  TorchWeave is up\n  API:     {base}  (try {base}/health and {base}/v1/models)\n"
        f"  Flower:  {flower}\n  Metrics: {metrics}/metrics\n  Ctrl-C stops everything.\n",
        flush=True,
    )


def follow_logs(logs: Path, stop: threading.Event) -> None:
    """Print every process's new log lines as `name | line`, and explain a give-up."""
    offsets: dict[Path, int] = {}
    while not stop.wait(POLL_S):
        for path in sorted(logs.glob("*.log")):
            with open(path, "rb") as f:
                f.seek(offsets.get(path, 0))
                chunk = f.read()
                offsets[path] = f.tell()
            name = path.stem
            for line in chunk.decode(errors="replace").splitlines():
                print(f"{name:>14} | {line}", flush=True)
                if "entered FATAL state" in line:
                    explain_give_up(logs, line)


def explain_give_up(logs: Path, line: str) -> None:
    process = line.split("gave up: ", 1)[-1].split(" ", 1)[0]
    tail = (logs / f"{process}.log").read_text(errors="replace").splitlines()[-15:] if process else []
    print(
        f"\n  {process} keeps dying at start; it is given up on and will not restart by itself.\n"
        "  Its last lines:\n" + "\n".join(f"    {t}" for t in tail) + "\n"
        "  Fix the cause, then restart `make run`.\n",
        flush=True,
    )


def main() -> int:
    s = get_settings()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    run_dir = s.cache_dir / "run"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    for old in (run_dir / "logs").glob("*.log"):
        old.unlink()
    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = EmbeddedRedis(s.cache_dir / "redis", appendonly=True).start()
        env["REDIS_URL"] = redis_server.url
        print(f"embedded Redis on {redis_server.url}, data in {redis_server.data_dir}", flush=True)
    warning = redis_memory.check_eviction_policy(bus.connect(env["REDIS_URL"], s.redis_tls_verify), log)
    if warning is not None:
        print(f"\n  WARNING: {warning}\n", flush=True)
    conf = run_dir / "supervisord.conf"
    counts = {"worker": s.num_workers}
    conf.write_text(render(read_procfile(PROJECT_ROOT / "Procfile"), counts, run_dir, s.drain_timeout_s))
    stop = threading.Event()
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    threading.Thread(
        target=announce_when_ready,
        args=(
            f"http://{host}:{s.port}",
            f"http://{host}:{s.flower_port}",
            f"http://{host}:{s.metrics_port}",
            stop,
        ),
        daemon=True,
    ).start()
    threading.Thread(target=follow_logs, args=(run_dir / "logs", stop), daemon=True).start()
    supervisor = subprocess.Popen(
        [str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)], env=env, cwd=PROJECT_ROOT
    )
    # SIGTERM to us stops everything the same way Ctrl-C does: supervisord stops its programs in order.
    signal.signal(signal.SIGTERM, lambda *_: supervisor.send_signal(signal.SIGTERM))
    try:
        while True:
            try:
                return supervisor.wait()
            except KeyboardInterrupt:
                continue  # supervisord got the same SIGINT and is stopping its programs in order
    finally:
        time.sleep(2 * POLL_S)  # the last log lines
        stop.set()
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
