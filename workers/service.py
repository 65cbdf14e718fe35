"""One engine serving one model, reached from Celery task threads.

A task thread calls `run(request_id)`, which claims the request, hands it to the engine loop
(workers/engine_loop.py) and waits until it ends. A request another worker started (and
lost) resumes from its stream: the tokens already sent are prefilled with the prompt, so the
client sees no gap and no repeat.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import redis

from shared import bus, json_grammar, lifecycle, timeline
from shared.messages import GenerationRequest, TokenEvent
from shared.settings import Settings
from workers import kv_budget
from workers.chat import prompt_ids
from workers.engine import LLMEngine
from workers.engine_loop import EngineLoop
from workers.model_fit import free_memory
from workers.model_loader import LoadedModel, context_length
from workers.request_stream import ActiveRequest
from workers.seats import Seats
from workers.structured_output import StructuredOutput
from workers.text_output import TextOutput
from workers.token_text import TokenText
from workers.torch_thread import TorchThread

log = logging.getLogger(__name__)


class WrongModel(RuntimeError):
    """A task reached a worker that switched models since it was queued: it goes back to its queue."""


class GiveBack(RuntimeError):
    """A task held back for fair share found other keys' requests waiting: it goes back to its queue,
    and the thread takes the next message, theirs (their priority is higher)."""


class EngineService:
    def __init__(
        self,
        loaded: LoadedModel,
        settings: Settings,
        client: redis.Redis,
        worker_id: str,
        enqueue: Callable[[GenerationRequest], None],
    ) -> None:
        self.loaded = loaded
        self.settings = settings
        self.redis = client
        self.worker_id = worker_id
        eos = loaded.tokenizer.eos_token_id
        context = context_length(loaded.model.config, settings)
        blocks = kv_budget.num_blocks(
            settings.kv_cache_memory, loaded.model.config, loaded.dtype, free_memory(loaded.device),
            loaded.device, settings.block_size, settings.max_batch * context,
        )  # fmt: skip
        # One request can never hold more than the whole pool: the context served stops there, so the
        # API refuses a longer request up front instead of the engine failing it later.
        self.max_model_len = min(context, blocks * settings.block_size)
        if self.max_model_len < context:
            log.warning(
                "the KV cache (%d blocks of %d) holds %d tokens, less than %s's context; serving %d",
                blocks, settings.block_size, self.max_model_len, loaded.name, self.max_model_len,
            )  # fmt: skip
        self.engine = LLMEngine(
            loaded.model,
            settings.max_batch,
            self.max_model_len,
            set() if eos is None else {eos},
            max_batch_tokens=settings.max_batch_tokens,
            num_blocks=blocks,
            block_size=settings.block_size,
            enable_prefix_caching=settings.prefix_caching,
        )
        self.loop = EngineLoop(self.engine, TokenText(loaded.tokenizer), client, settings, worker_id, enqueue)
        self.structured = StructuredOutput(
            loaded.tokenizer, self.engine.vocab_size, json_grammar.parser_limits(settings)
        )
        self.started_at = time.time()
        self.last_request_at = 0.0  # when a request last arrived here: MODEL_IDLE_TTL and AUTOLOAD read it
        self.seats = Seats(client, worker_id, loaded.name, settings.max_batch)  # who is claimed; fair share
        self._loop_done: concurrent.futures.Future[None] | None = None

    # --- lifetime ---

    def start(self, torch_thread: TorchThread) -> None:
        """Run the engine loop on the worker's torch thread (see workers/torch_thread.py) until stop()."""
        self._loop_done = torch_thread.submit(self.loop.run)
        self.seats.start()

    def stop(self) -> None:
        self.loop.stopping.set()
        self.seats.close()
        if self._loop_done is not None:
            concurrent.futures.wait([self._loop_done], timeout=10)

    def close(self, timeout_s: float) -> None:
        """Hand every request back to the queue, wait (up to timeout_s) until their tasks let go, stop."""
        self.hand_back()
        deadline = time.monotonic() + timeout_s
        while self.num_active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()

    def held_bytes(self) -> int:
        """Device memory this service holds: the model's weights plus the KV cache."""
        weights = sum(p.numel() * p.element_size() for p in self.loaded.model.parameters())
        return int(weights + self.engine.kv_cache_bytes)

    @property
    def mean_request_s(self) -> float | None:
        return self.loop.mean_request_s

    # --- what task threads call ---

    @property
    def num_active(self) -> int:
        return len(self.seats)

    def claimed_ids(self) -> list[str]:
        """Requests whose leases the heartbeat renews."""
        return self.seats.ids()

    def call_in_loop(self, job: Callable[[], None]) -> None:
        """Run job on the loop's thread between two steps (nothing else runs meanwhile); wait for it."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                job()
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.put(run)
        done.result()

    def run(self, request_id: str) -> None:
        """Generate for a stored request, streaming its events; returns when the request has ended
        here (finished, cancelled, failed, or handed back to the queue)."""
        stored = bus.load_request(self.redis, request_id)
        if stored is None:
            log.warning("request %s is unknown or expired; nothing to do", request_id)
            return
        request = stored.request
        if request.model != self.loaded.name:
            raise WrongModel(
                f"request {request_id} is for {request.model!r}; this worker serves {self.loaded.name!r}"
            )
        self.last_request_at = time.time()
        seat = self.seats.wait(request)
        if seat.claim:
            self._generate(request)
            return
        if seat.instead is not None:
            # Another owner's request waits: run it here and now, straight from the waiting set (its own
            # message, delivered later, finds it claimed and is dropped), then give this task back.
            self._generate(seat.instead)
        raise GiveBack(f"request {request_id}: other keys' requests wait; this one goes back in line")

    def _generate(self, request: GenerationRequest) -> None:
        """Claim a request, run it in the engine, and return once it has ended here."""
        with self.holding(request) as epoch:
            if not epoch:
                return  # cancelled while queued, or a duplicate delivery of a request someone else runs
            timeline.record(self.redis, request.request_id, "claimed", self.settings.stream_ttl_s,
                            worker=self.worker_id, epoch=epoch)  # fmt: skip
            active = self._resume(request)
            active.epoch = epoch
            self.loop.put(lambda: self.loop.add(active))
            active.done.wait()

    @contextlib.contextmanager
    def holding(self, request: GenerationRequest) -> Iterator[int]:
        """Claim a request for the duration of the block, yielding the claim's epoch (0 if it could not
        be claimed), which every write for it carries; the heartbeat renews its lease meanwhile."""
        epoch = lifecycle.claim(self.redis, request, self.worker_id, self.settings.worker_ttl_s)
        if not epoch:
            yield 0
            return
        self.seats.take(request)
        try:
            yield epoch
        finally:
            self.seats.leave(request.request_id)

    def note_drain(self) -> None:
        """Say on each held request's timeline that this worker is stopping: it finishes what it can within
        DRAIN_TIMEOUT and hands the rest back. Informational: the stop goes on if Redis cannot take it."""
        with contextlib.suppress(redis.RedisError):
            pipe = self.redis.pipeline(transaction=False)
            ttl_s, worker = self.settings.stream_ttl_s, self.worker_id
            for request_id in self.claimed_ids():
                timeline.record(pipe, request_id, "draining", ttl_s, worker=worker,
                                timeout_s=self.settings.drain_timeout_s)  # fmt: skip
            pipe.execute()

    def hand_back(self) -> None:
        """Give every request back to the queue (after a drain timeout); they continue elsewhere."""
        self.loop.put(self.loop.hand_back_all)

    def _resume(self, request: GenerationRequest) -> ActiveRequest:
        """The request's state, continued from whatever its stream already holds."""
        tokenizer = self.loaded.tokenizer
        schema = request.params.json_schema
        active = ActiveRequest(
            request,
            prompt_ids(tokenizer, request),
            TextOutput(tokenizer, request.params.stop),
            constraint=None if schema is None else self.structured.constraint(schema),
        )
        events = bus.read_events(self.redis, request.request_id, count=None)
        tokens = [e for e in events if isinstance(e, TokenEvent)]
        if tokens:
            active.prior_ids = [t for e in tokens for t in e.token_ids]
            active.output.resume(active.prior_ids, num_sent=sum(len(e.text) for e in tokens))
            active.next_index = tokens[-1].index + 1
            active.is_started = True
            log.info("resuming %s after %d tokens", request.request_id, len(active.prior_ids))
        return active
