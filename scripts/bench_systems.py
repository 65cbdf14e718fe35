"""The in-process systems `scripts/bench.py` compares (the HTTP ones are in bench_http.py), each timed
the same way.

Every runner takes token-id prompts, makes exactly `new_tokens` tokens per request (EOS off,
greedy) and returns a `Run`: per-request arrival and token times, from which bench.py
computes tokens/s, time to first token and inter-token latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm
from transformers import GenerationConfig
from transformers.generation.streamers import BaseStreamer

from workers.engine import LLMEngine, SamplingOptions
from workers.engine.engine import DEFAULT_BLOCK_SIZE


@dataclass
class RequestTimes:
    arrival: float
    token_times: list[float] = field(default_factory=list)  # one entry per output token
    num_tokens: int = 0


@dataclass
class Run:
    system: str
    requests: list[RequestTimes]
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StepClock(BaseStreamer):
    """model.generate calls put() once with the prompt, then once per new token of the whole batch."""

    def __init__(self, device: torch.device, on_token: Callable[[], None]) -> None:
        self.device, self.on_token = device, on_token
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        _sync(self.device)
        self.times.append(time.perf_counter())
        self.on_token()

    def end(self) -> None:
        pass


def _greedy_config(new_tokens: int) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )


@torch.inference_mode()
def hf_generate(model: Any, prompts: list[list[int]], new_tokens: int, bar: tqdm, system: str) -> Run:
    """model.generate on all prompts as one static batch (one prompt: one at a time, called per prompt)."""
    device = model.device
    ids = torch.tensor(prompts, device=device)  # the prompts share one length: no padding needed
    start = time.perf_counter()
    clock = _StepClock(device, lambda: bar.update(len(prompts)))
    model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=_greedy_config(new_tokens),
                   streamer=clock)  # fmt: skip
    wall = time.perf_counter() - start
    reqs = [RequestTimes(start, list(clock.times), len(clock.times)) for _ in prompts]
    return Run(system, reqs, wall)


def hf_one_at_a_time(model: Any, prompts: list[list[int]], new_tokens: int, bar: tqdm) -> Run:
    start = time.perf_counter()
    reqs: list[RequestTimes] = []
    for prompt in prompts:
        reqs.extend(hf_generate(model, [prompt], new_tokens, bar, "").requests)
    return Run("hf_one_at_a_time", reqs, time.perf_counter() - start)


@torch.inference_mode()
def hf_generate_batch(model: Any, prompts: list[list[int]], new_tokens: int, bar: tqdm) -> Run:
    """transformers' own continuous batching; it reports a timestamp per generated token."""
    start = time.perf_counter()
    out = model.generate_batch(
        inputs=prompts, generation_config=_greedy_config(new_tokens), record_timestamps=True, warmup=True
    )
    wall = time.perf_counter() - start
    reqs = [
        RequestTimes(o.created_time, list(o.timestamps or []), len(o.generated_tokens)) for o in out.values()
    ]
    bar.update(sum(r.num_tokens for r in reqs))
    return Run("hf_generate_batch", reqs, wall)


@dataclass
class Arrivals:
    """Fixed concurrency with staggered starts: client i sends its first request at i * stagger_s,
    then each next one as soon as its previous one finishes."""

    concurrency: int
    num_requests: int
    stagger_s: float

    def client_requests(self, client: int) -> list[int]:
        return list(range(client, self.num_requests, self.concurrency))


@torch.inference_mode()
def engine_in_process(
    model: Any, prompts: list[list[int]], new_tokens: int, arrivals: Arrivals, max_model_len: int,
    max_batch_tokens: int, bar: tqdm, prefix_caching: bool = True, system: str = "engine",
    num_blocks: int | None = None, temperature: float = 0.0,
) -> Run:  # fmt: skip
    """Our engine, stepped in a loop that plays the arrivals in real time. Its KV budget is num_blocks,
    by default what a slot cache of `concurrency` requests would hold, so both engines get the same
    memory."""
    blocks = num_blocks or arrivals.concurrency * -(-max_model_len // DEFAULT_BLOCK_SIZE)
    engine = LLMEngine(
        model,
        arrivals.concurrency,
        max_model_len,
        set(),
        max_batch_tokens=max_batch_tokens,
        enable_prefix_caching=prefix_caching,
        num_blocks=blocks,
    )
    opts = SamplingOptions(max_new_tokens=new_tokens, temperature=temperature, ignore_eos=True)
    start = time.perf_counter()
    queues = {c: arrivals.client_requests(c) for c in range(arrivals.concurrency)}
    due = sorted((start + c * arrivals.stagger_s, c) for c in queues if queues[c])
    owner: dict[str, int] = {}
    times: dict[int, RequestTimes] = {}
    step_times: list[tuple[int, float]] = []
    most_running = 0  # requests holding KV at once, whether or not each ran in a given step
    while due or engine.has_work():
        now = time.perf_counter()
        while due and due[0][0] <= now:
            _, client = due.pop(0)
            rid = queues[client].pop(0)
            times[rid] = RequestTimes(time.perf_counter())
            owner[str(rid)] = client
            engine.add_request(str(rid), prompts[rid % len(prompts)], opts)
        if not engine.has_work():
            time.sleep(max(0.0, due[0][0] - time.perf_counter()))
            continue
        t0 = time.perf_counter()
        outputs = engine.step()
        t1 = time.perf_counter()
        most_running = max(most_running, len(engine.scheduler.running))
        step_times.append((len(outputs), t1 - t0))
        for out in outputs:
            rt = times[int(out.seq_id)]
            rt.token_times.append(t1)
            rt.num_tokens += 1
            if out.finish_reason is not None:
                client = owner.pop(out.seq_id)
                if queues[client]:
                    due.append((t1, client))
                    due.sort()
        bar.update(len(outputs))
    wall = time.perf_counter() - start
    run = Run(system, [times[i] for i in sorted(times)], wall)
    run.extra = {
        "largest_batch": engine.stats.largest_batch,
        "steps": len(step_times),
        "prefix_cache_hit_rate": round(engine.prefix_cache_hit_rate, 3),
        "preemptions": engine.scheduler.num_preemptions,
        "most_running": most_running,
    }
    full = [dt for n, dt in step_times if n == arrivals.concurrency]
    if full:
        run.extra["full_batch_step_s_p50"] = sorted(full)[len(full) // 2]
    return run
