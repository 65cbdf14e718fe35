"""Kill-and-restart chaos under load: reports the requests lost (must be 0) and recovery times.

Starts its own Redis, API and workers (loopback only). Clients keep submitting greedy requests
and follow each stream to its end, reconnecting from the last index they saw. Every cycle
SIGKILLs a random worker mid-generation and starts a replacement. A request counts as lost
unless its stream ends with `done` after indexes 0..n with no gap and no repeat.

    .venv/bin/python scripts/chaos.py --cycles 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from devtools.clients import parse_sse
from devtools.embedded_redis import EmbeddedRedis
from devtools.servers import Process, start_api, start_worker
from shared.settings import PROJECT_ROOT


class Client(threading.Thread):
    """Submits requests one after another and follows each to its end."""

    def __init__(self, url: str, stop: threading.Event, max_new_tokens: int) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.max_new_tokens = url, stop, max_new_tokens
        self.results: list[dict] = []

    def run(self) -> None:
        while not self.stop.is_set():
            body = {
                "prompt": f"chaos {random.random()}",
                "max_new_tokens": self.max_new_tokens,
                "temperature": 0,
                "ignore_eos": True,
            }
            try:
                sub = requests.post(f"{self.url}/v1/requests", json=body, timeout=10).json()
            except requests.RequestException:
                continue
            self.results.append(self.follow(sub["id"]))

    def follow(self, rid: str) -> dict:
        indexes: list[int] = []
        times: list[float] = []
        last, end = -1, None
        deadline = time.monotonic() + 120
        while end is None and time.monotonic() < deadline:
            try:
                with requests.get(
                    f"{self.url}/v1/requests/{rid}/stream",
                    headers={"Last-Event-ID": str(last)},
                    stream=True,
                    timeout=30,
                ) as resp:
                    lines: list[bytes] = []
                    for line in resp.iter_lines(delimiter=b"\n"):
                        lines.append(line)
                        if line != b"":
                            continue
                        for event in parse_sse(lines):
                            if event.id is None:
                                continue
                            indexes.append(event.data["index"])
                            times.append(time.monotonic())
                            last = event.data["index"]
                            if event.event != "token":
                                end = event.event
                        lines = []
            except requests.RequestException:
                time.sleep(0.2)
        ok = end == "done" and indexes == list(range(len(indexes)))
        return {"id": rid, "ok": ok, "end": end, "times": times}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=400)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--out", default="bench-results/chaos.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chaos-"))
    redis_server = EmbeddedRedis(tmp / "redis").start()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "CACHE_DIR": str(PROJECT_ROOT / ".cache"),
        "HEARTBEAT_INTERVAL": "0.5",
        "DEVICE": "cpu",
        "PYTHONPATH": str(PROJECT_ROOT),
        "OMP_NUM_THREADS": "1",
    }
    workers: list[Process] = [start_worker(env, tmp, f"w{i}") for i in range(args.workers)]
    api, url = start_api(env, tmp)
    stop = threading.Event()
    clients = [Client(url, stop, args.max_new_tokens) for _ in range(args.clients)]
    kills: list[float] = []
    try:
        for c in clients:
            c.start()
        for cycle in range(args.cycles):
            time.sleep(args.interval)
            victim = random.choice(workers)
            os.kill(victim.pid, signal.SIGKILL)
            kills.append(time.monotonic())
            victim.stop()
            workers[workers.index(victim)] = start_worker(env, tmp, f"w{cycle}-{args.workers}")
            print(f"cycle {cycle + 1}/{args.cycles}: killed worker {victim.pid}", flush=True)
        stop.set()
        for c in clients:
            c.join(timeout=180)
    finally:
        for proc in [*workers, api]:
            proc.stop()
        redis_server.stop()
    results = [r for c in clients for r in c.results]
    lost = [r for r in results if not r["ok"]]
    # Recovery: for each kill, the longest silence of a stream that spanned it.
    recoveries = []
    for t in kills:
        gaps = [
            b - a for r in results for a, b in zip(r["times"], r["times"][1:], strict=False) if a <= t < b
        ]
        if gaps:
            recoveries.append(max(gaps))
    summary = {
        "cycles": args.cycles,
        "requests": len(results),
        "lost": len(lost),
        "recovery_s_median": round(statistics.median(recoveries), 2) if recoveries else None,
        "recovery_s_max": round(max(recoveries), 2) if recoveries else None,
        "lost_ids": [(r["id"], r["end"]) for r in lost],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
