"""Scale benchmark of the token relay: one API process holding N open SSE streams while tokens flow.

This script plays the worker: it writes one token event to every stream per step, in one
pipelined round trip (as a worker does), each carrying the time it was written. N clients
(asyncio, loopback only) measure the delay from that write to their receipt. Before tokens
flow, the API process's resident memory gives the cost of an idle stream. Each gunicorn
worker class is measured in turn.

    .venv/bin/python scripts/bench_streams.py --streams 500 --seconds 10 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from devtools.embedded_redis import EmbeddedRedis, free_port
from shared import admission, bus, lifecycle
from shared.messages import (
    DoneEvent,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
    Usage,
)
from shared.settings import PROJECT_ROOT


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def gunicorn_worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Client:
    """One SSE subscriber over a raw HTTP/1.0 connection (no chunked encoding to undo)."""

    def __init__(self, port: int, request_id: str) -> None:
        self.port, self.request_id = port, request_id
        self.latencies: list[float] = []
        self.indexes: list[int] = []
        self.connected = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        path = f"/v1/requests/{self.request_id}/stream"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
        await writer.drain()
        event = ""
        while line := await reader.readline():
            text = line.decode().rstrip("\r\n")
            if text.startswith(": stream open"):
                self.connected.set()
            elif text.startswith("event: "):
                event = text[7:]
            elif text.startswith("data: "):
                received = time.time()
                data = json.loads(text[6:])
                if event == "token":
                    self.latencies.append(received - float(data["text"]))
                    self.indexes.append(data["index"])
                elif event in ("done", "error"):
                    break
        writer.close()


def write_tokens(redis_url: str, ids: list[str], steps: int, rate: float) -> None:
    """A worker's writes: every stream's next token in one pipeline per step, `rate` steps a second.

    It runs in a process of its own, as a worker does, so it never competes with the clients for a GIL.
    """
    r = bus.connect(redis_url)
    start = time.monotonic()
    for step in range(steps):
        pipe = r.pipeline(transaction=False)
        stamp = f"{time.time():.6f}"
        for rid in ids:
            bus.append_event(pipe, rid, TokenEvent(index=step, text=stamp))
        pipe.execute()
        time.sleep(max(0.0, start + (step + 1) / rate - time.monotonic()))
    pipe = r.pipeline(transaction=False)
    usage = Usage(prompt_tokens=1, completion_tokens=steps, total_tokens=steps + 1)
    for rid in ids:
        bus.append_event(pipe, rid, DoneEvent(index=steps, finish_reason=FinishReason.LENGTH, usage=usage))
    pipe.execute()


async def measure(port: int, master_pid: int, redis_url: str, n: int, seconds: float, rate: float) -> dict:
    r = bus.connect(redis_url)
    ids = []
    for _ in range(n):
        req = GenerationRequest(
            request_id=uuid.uuid4().hex,
            model="bench",
            prompt="x",
            params=SamplingParams(),
            created_at=time.time(),
        )
        admission.admit(r, [req], ttl_s=600)
        lifecycle.claim(r, req, "bench-writer", lease_s=600)  # running: the relay sends no queue updates
        ids.append(req.request_id)
    worker_pid = gunicorn_worker_pid(master_pid)
    base_kib = rss_kib(worker_pid)
    clients = [Client(port, rid) for rid in ids]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), timeout=60)
    except TimeoutError:
        done = sum(c.connected.is_set() for c in clients)
        raise RuntimeError(f"only {done} of {n} streams opened within 60 s") from None
    connect_s = time.monotonic() - t0
    await asyncio.sleep(3)  # let the idle streams settle into their blocking reads
    idle_kib = rss_kib(worker_pid)
    steps = int(seconds * rate)
    writer = multiprocessing.get_context("spawn").Process(
        target=write_tokens, args=(redis_url, ids, steps, rate)
    )
    writer.start()
    await asyncio.to_thread(writer.join)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    latencies = [x * 1000 for c in clients for x in c.latencies]
    complete = sum(1 for c in clients if c.indexes == list(range(steps)))
    by_step: dict[int, list[float]] = {}
    for c in clients:
        for i, x in zip(c.indexes, c.latencies, strict=True):
            by_step.setdefault(i, []).append(x * 1000)
    step_max = [max(v) for _, v in sorted(by_step.items())]
    return {
        "streams": n,
        "steps": steps,
        "rate_steps_per_s": rate,
        "events_per_s": n * rate,
        "connect_all_s": round(connect_s, 2),
        "streams_complete": complete,
        "events_received": len(latencies),
        "events_expected": n * steps,
        "latency_ms_p50": round(percentile(latencies, 0.50), 2),
        "latency_ms_p99": round(percentile(latencies, 0.99), 2),
        "latency_ms_max": round(max(latencies), 2) if latencies else None,
        "step_max_latency_ms_p50": round(percentile(step_max, 0.5), 2),
        "step_max_latency_ms_p90": round(percentile(step_max, 0.9), 2),
        "rss_base_mib": round(base_kib / 1024, 1),
        "rss_idle_mib": round(idle_kib / 1024, 1),
        "kib_per_idle_stream": round((idle_kib - base_kib) / n, 1),
    }


def run_one(worker_class: str, args: argparse.Namespace, redis_url: str) -> dict:
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "API_WORKER_CLASS": worker_class,
        "API_THREADS": str(args.streams + 100),
        "SSE_HEARTBEAT": "15",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        "api/gunicorn_conf.py",
        "api.wsgi:app",
        "--access-logfile",
        "/dev/null",
    ]
    api = subprocess.Popen(
        cmd, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi-does-not-exist", timeout=1)
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        quiet_gc()
        result = asyncio.run(measure(port, api.pid, redis_url, args.streams, args.seconds, args.rate))
        return {"worker_class": worker_class, **result}
    finally:
        api.terminate()
        api.wait(timeout=20)


def quiet_gc() -> None:
    """The clients are the harness, not the server: keep their GC pauses out of the figures."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="decode steps per second (a token per stream each)"
    )
    parser.add_argument("--worker-classes", default="gthread,gevent")
    parser.add_argument("--out", default="bench-results/streams.json")
    args = parser.parse_args()
    server = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        server = EmbeddedRedis(PROJECT_ROOT / ".cache" / "bench-redis").start()
        redis_url = server.url
    results = []
    try:
        for worker_class in args.worker_classes.split(","):
            print(
                f"measuring {worker_class}: {args.streams} streams, {args.rate} steps/s for {args.seconds}s",
                flush=True,
            )
            results.append(run_one(worker_class, args, redis_url))
            print(json.dumps(results[-1], indent=2), flush=True)
    finally:
        if server is not None:
            server.stop()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(
        "\n| worker class | streams | events/s | p50 ms | p99 ms | max ms | complete | KiB per idle stream |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for x in results:
        print(
            f"| {x['worker_class']} | {x['streams']} | {x['events_per_s']:.0f} | {x['latency_ms_p50']} | "
            f"{x['latency_ms_p99']} | {x['latency_ms_max']} | {x['streams_complete']}/{x['streams']} | "
            f"{x['kib_per_idle_stream']} |"
        )


if __name__ == "__main__":
    main()
