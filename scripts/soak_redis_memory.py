"""Redis memory under steady traffic: is it flat? Prints used_memory and the key count every 10 s, then
whether memory stayed within 10% over the second half of the run.

Starts its own cluster as `make run` does (an embedded Redis with its append-only file, workers, the API),
on loopback only, and stops each process by its pid. Clients submit greedy requests one after another
and read each stream to its end. A finished request's keys stay for STREAM_TTL, so memory levels off once
the first requests expire: the run sets a short STREAM_TTL (default 60 s) so that the second half of a
10-minute run is past it. Every other key (metrics, marks, leases, Celery's) must not grow with traffic.

    .venv/bin/python scripts/soak_redis_memory.py --duration 600
"""

from __future__ import annotations

import argparse
import json
import os
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
from shared import bus, redis_memory
from shared.settings import PROJECT_ROOT

SAMPLE_S = 10.0
FLAT_WITHIN = 0.10


class Client(threading.Thread):
    """Submits a request, reads its stream to the end, and again, until told to stop."""

    def __init__(self, url: str, stop: threading.Event, max_new_tokens: int) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.max_new_tokens = url, stop, max_new_tokens
        self.num_done = self.num_failed = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"prompt": f"soak {self.name} {n}", "max_new_tokens": self.max_new_tokens,
                    "temperature": 0, "ignore_eos": True}  # fmt: skip
            try:
                rid = requests.post(f"{self.url}/v1/requests", json=body, timeout=30).json()["id"]
                with requests.get(f"{self.url}/v1/requests/{rid}/stream", stream=True, timeout=120) as resp:
                    events = parse_sse(resp.iter_lines(decode_unicode=False, delimiter=b"\n"))
                ok = bool(events) and events[-1].event == "done"
            except (requests.RequestException, KeyError, ValueError):
                ok = False
            self.num_done += ok
            self.num_failed += not ok


def is_flat(used: list[int]) -> tuple[bool, float]:
    """Whether used_memory over the second half of the samples stays within FLAT_WITHIN (its largest
    sample at most 10% above its smallest); and that spread."""
    half = used[len(used) // 2 :]
    if not half:
        return False, float("nan")
    spread = max(half) / min(half) - 1
    return spread <= FLAT_WITHIN, spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default 600)")
    parser.add_argument("--stream-ttl", type=int, default=60, help="STREAM_TTL for the run (seconds)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", default="bench-results/soak_redis_memory.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="soak-redis-"))
    server = EmbeddedRedis(tmp / "redis", appendonly=True).start()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "CACHE_DIR": str(PROJECT_ROOT / ".cache"),
        "STREAM_TTL": str(args.stream_ttl),
        "DEVICE": "cpu",
        "PYTHONPATH": str(PROJECT_ROOT),
        "OMP_NUM_THREADS": "1",
    }
    r = bus.connect(server.url)
    procs: list[Process] = []
    stop = threading.Event()
    clients: list[Client] = []
    samples: list[dict[str, float]] = []
    try:
        procs += [start_worker(env, tmp, f"soak-w{i}") for i in range(args.workers)]
        api, url = start_api(env, tmp)
        procs.append(api)
        clients = [Client(url, stop, args.max_new_tokens) for _ in range(args.clients)]
        for client in clients:
            client.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.duration:
            stop.wait(SAMPLE_S)
            memory = redis_memory.memory(r)
            done = sum(c.num_done for c in clients)
            sample = {"t": round(elapsed + SAMPLE_S), "used": memory["used_bytes"], "keys": memory["keys"]}
            samples.append({**sample, "done": done})
            print(f"t={sample['t']:>5}s used_memory={sample['used']:>10} keys={sample['keys']:>6} "
                  f"done={done}", flush=True)  # fmt: skip
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=130)
        for proc in reversed(procs):
            proc.stop()
        server.stop()
    failed = sum(c.num_failed for c in clients)
    flat = report(samples, failed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"args": vars(args), "samples": samples, "failed": failed}, indent=2)
    )
    return 0 if flat and failed == 0 else 1


def report(samples: list[dict[str, float]], failed: int) -> bool:
    """Print the verdict on the second half of the run; True when memory was flat."""
    flat, spread = is_flat([int(s["used"]) for s in samples])
    keys_half = [int(s["keys"]) for s in samples[len(samples) // 2 :]] or [0]
    done = int(samples[-1]["done"]) if samples else 0
    print(f"\n{'FLAT' if flat else 'NOT FLAT'}: used_memory over the second half spans {spread:.1%} "
          f"(limit {FLAT_WITHIN:.0%}); keys {min(keys_half)}..{max(keys_half)}; "
          f"{done} requests done, {failed} failed", flush=True)  # fmt: skip
    return flat


if __name__ == "__main__":
    sys.exit(main())
