"""The two systems `scripts/bench.py` reaches over HTTP: our whole server, and Hugging Face's
`transformers serve --continuous-batching` (the peer), driven by the same clients and arrivals."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from tqdm import tqdm

from devtools.clients import iter_sse
from devtools.embedded_redis import free_port
from devtools.servers import VENV_BIN, Process, wait_for
from scripts.bench_systems import Arrivals, RequestTimes, Run


def play(arrivals: Arrivals, send: Callable[[int], RequestTimes], timeout_s: float) -> tuple[Run, list[str]]:
    """One thread per client: client c starts at c * stagger_s and sends its requests back to back.
    `send(rid)` makes request rid and returns its times; what it raises is collected as an error."""
    times: dict[int, RequestTimes] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def client(c: int) -> None:
        time.sleep(max(0.0, start + c * arrivals.stagger_s - time.perf_counter()))
        for rid in arrivals.client_requests(c):
            try:
                rt = send(rid)
            except Exception as exc:
                with lock:
                    errors.append(repr(exc))
                continue
            with lock:
                times[rid] = rt

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(arrivals.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s)
    return Run("", [times[i] for i in sorted(times)], time.perf_counter() - start), errors


def server(
    url: str, texts: list[str], new_tokens: int, arrivals: Arrivals, bar: tqdm, temperature: float = 0.0,
    timeout_s: float = 1800,
) -> Run:  # fmt: skip
    """The whole server: HTTP submit, Redis, a Celery worker, and the SSE stream back."""
    worker_side: list[tuple[float, float]] = []  # (submitted -> first step began, -> first token written)

    def send(rid: int) -> RequestTimes:
        rt = RequestTimes(time.perf_counter())
        body = {"prompt": texts[rid % len(texts)], "max_new_tokens": new_tokens, "temperature": temperature,
                "ignore_eos": True}  # fmt: skip
        sub = requests.post(f"{url}/v1/requests", json=body, timeout=30).json()
        with requests.get(sub["stream_url"], stream=True, timeout=timeout_s) as resp:
            for event in iter_sse(resp.iter_lines(delimiter=b"\n")):
                if event.event == "token":
                    rt.token_times.append(time.perf_counter())
                    bar.update(1)
                elif event.event == "done":
                    rt.num_tokens = event.data["usage"]["completion_tokens"]
                    break
                elif event.event == "error":
                    raise RuntimeError(event.data["message"])
        timings = requests.get(f"{url}/v1/requests/{sub['id']}", timeout=30).json()["timings"]
        worker_side.append((timings["queued_s"], timings["ttft_s"]))
        return rt

    run, errors = play(arrivals, send, timeout_s)
    if errors:
        raise RuntimeError(f"{len(errors)} server requests failed, the first: {errors[0]}")
    run.system = "server"
    queued = sorted(q for q, _ in worker_side if q is not None)
    written = sorted(t for _, t in worker_side if t is not None)
    if queued and written:
        # Where the server's time to first token goes: waiting for a step, the step, then the relay.
        run.extra["queued_to_first_step_s_p50"] = queued[len(queued) // 2]
        run.extra["first_token_written_s_p50"] = written[len(written) // 2]
    return run


def peer_model_dir(model_dir: Path, out: Path) -> Path:
    """The same weights and tokenizer with EOS unset: the peer has no ignore_eos, and every system must
    make exactly new_tokens tokens."""
    out.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():
        if path.suffix == ".json" and path.name in ("config.json", "generation_config.json"):
            config = json.loads(path.read_text())
            config["eos_token_id"] = None
            (out / path.name).write_text(json.dumps(config))
        elif not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())
    return out


def start_peer(
    model_dir: Path, device: str, dtype: str, log_dir: Path, max_batch_tokens: int
) -> tuple[Process, str]:
    """`transformers serve --continuous-batching` on model_dir; returns once /health answers."""
    exe = shutil.which("transformers", path=str(VENV_BIN)) or "transformers"
    port = free_port()
    cmd = [exe, "serve", "--continuous-batching", "--host", "127.0.0.1", "--port", str(port),
           "--device", device, "--dtype", dtype, "--cb-max-batch-tokens", str(max_batch_tokens),
           str(model_dir)]  # fmt: skip
    proc = Process("transformers-serve", cmd, dict(os.environ), log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: requests.get(f"{url}/health", timeout=2).status_code == 200, 600, "transformers serve", proc
    )
    return proc, url


def peer(
    url: str, model: str, texts: list[str], new_tokens: int, arrivals: Arrivals, bar: tqdm,
    temperature: float = 0.0, timeout_s: float = 1800,
) -> Run:  # fmt: skip
    """transformers serve's OpenAI completions endpoint, streamed: one chunk a token."""

    def send(rid: int) -> RequestTimes:
        rt = RequestTimes(time.perf_counter())
        body = {"model": model, "prompt": texts[rid % len(texts)], "max_tokens": new_tokens,
                "temperature": temperature,
                "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
        with requests.post(f"{url}/v1/completions", json=body, stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            for line in resp.iter_lines(delimiter=b"\n"):
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    rt.token_times.append(time.perf_counter())
                    bar.update(1)
                if chunk.get("usage"):
                    rt.num_tokens = chunk["usage"]["completion_tokens"]
        rt.num_tokens = rt.num_tokens or len(rt.token_times)
        return rt

    run, errors = play(arrivals, send, timeout_s)
    if errors:
        raise RuntimeError(f"{len(errors)} transformers serve requests failed, the first: {errors[0]}")
    run.system = "transformers_serve"
    return run
