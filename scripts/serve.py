"""`make run`: an embedded Redis (unless REDIS_URL is set), then the Procfile's processes through honcho.

Ctrl-C (SIGINT to the process group) stops honcho's processes, then Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools.embedded_redis import EmbeddedRedis
from shared.settings import PROJECT_ROOT, get_settings


def announce_when_ready(port: int, flower_port: int, metrics_port: int, stop: threading.Event) -> None:
    base = f"http://127.0.0.1:{port}"
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
        f"\n  TorchWeave is up\n  API:     {base}  (try {base}/health and {base}/model)\n"
        f"  Flower:  http://127.0.0.1:{flower_port}\n  Metrics: http://127.0.0.1:{metrics_port}/metrics\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


def main() -> int:
    s = get_settings()
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    redis_server = None
    if not env.get("REDIS_URL"):
        redis_server = EmbeddedRedis(s.cache_dir / "redis", appendonly=True).start()
        env["REDIS_URL"] = redis_server.url
        print(f"embedded Redis on {redis_server.url}, data in {redis_server.data_dir}", flush=True)
    cmd = [
        "honcho",
        "start",
        "-f",
        str(PROJECT_ROOT / "Procfile"),
        "-d",
        str(PROJECT_ROOT),
        "-p",
        str(s.port),
        "-c",
        f"web=1,worker={s.num_workers},flower=1,metrics=1",
    ]
    stop = threading.Event()
    threading.Thread(
        target=announce_when_ready, args=(s.port, s.flower_port, s.metrics_port, stop), daemon=True
    ).start()
    honcho = subprocess.Popen(cmd, env=env)
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        # honcho got the same SIGINT and is stopping its processes; give it time to finish.
        try:
            return honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            honcho.kill()
            return 1
    finally:
        stop.set()
        if honcho.poll() is None:
            honcho.terminate()
            time.sleep(0.5)
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    sys.exit(main())
