"""Connects one engine to Redis: a loop thread steps the engine and publishes each step's tokens.

Celery task threads call `run(request_id)`, which claims the request, hands it to the loop
and waits until it ends. The loop is the only thread that touches the engine. A request
another worker started (and lost) resumes from its stream: the tokens already sent are
prefilled with the prompt, so the client sees no gap and no repeat.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis

from shared import bus, lifecycle
from shared.messages import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    TokenEvent,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from shared.settings import Settings
from workers.chat import prompt_ids
from workers.engine import LLMEngine, SamplingOptions, StepOutput
from workers.model_loader import LoadedModel
from workers.redis_writes import Writes
from workers.text_output import TextOutput
from workers.torch_thread import TorchThread

log = logging.getLogger(__name__)
_FINISH_STATUS = {FinishReason.CANCELLED: RequestStatus.CANCELLED, FinishReason.ERROR: RequestStatus.FAILED}
_HAND_BACK = "hand-back"  # inbox marker: give every request back to the queue


@dataclass
class ActiveRequest:
    request: GenerationRequest
    prompt_ids: list[int]
    output: TextOutput
    prior_ids: list[int] = field(default_factory=list)  # tokens a previous worker already streamed
    done: threading.Event = field(default_factory=threading.Event)
    next_index: int = 0  # index of the next event on the request's stream
    pending_ids: list[int] = field(default_factory=list)  # tokens whose text is not in an event yet
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    is_started: bool = False
    admitted_at: float = 0.0

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def deadline(self) -> float | None:
        timeout = self.request.timeout_s
        return None if timeout is None else self.request.created_at + timeout


class WrongModel(RuntimeError):
    """A task reached a worker that switched models since it was queued: it goes back to its queue."""


def context_length(loaded: LoadedModel, settings: Settings) -> int:
    """MAX_MODEL_LEN when set, else the model's own context capped at 2048 (the KV cache is sized by it)."""
    own = int(getattr(loaded.model.config, "max_position_embeddings", 2048) or 2048)
    return min(own, settings.max_model_len) if settings.max_model_len else min(own, 2048)


def sampling_options(request: GenerationRequest) -> SamplingOptions:
    p = request.params
    return SamplingOptions(
        max_new_tokens=p.max_new_tokens,
        temperature=p.temperature,
        top_k=p.top_k,
        top_p=p.top_p,
        seed=p.seed,
        ignore_eos=p.ignore_eos,
        min_p=p.min_p,
        repetition_penalty=p.repetition_penalty,
        min_tokens=p.min_tokens,
        logprobs=p.logprobs,
    )


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
        self.enqueue = enqueue  # puts a requeued request's task back on its model's queue
        self.max_model_len = context_length(loaded, settings)
        eos = loaded.tokenizer.eos_token_id
        self.engine = LLMEngine(
            loaded.model,
            settings.max_batch,
            self.max_model_len,
            set() if eos is None else {eos},
            max_batch_tokens=settings.max_batch_tokens,
        )
        self.mean_request_s: float | None = None
        self.started_at = time.time()
        self.last_request_at = 0.0  # when a request last arrived here: MODEL_IDLE_TTL and AUTOLOAD read it
        self._token_texts: dict[int, str] = {}
        self._inbox: queue.Queue[ActiveRequest | str | Callable[[], None]] = queue.Queue()
        self._active: dict[str, ActiveRequest] = {}  # owned by the loop thread
        self._claimed: set[str] = set()  # every request this worker holds a lease on
        self._claimed_lock = threading.Lock()
        self._stopping = threading.Event()
        self._loop_done: concurrent.futures.Future[None] | None = None

    def start(self, torch_thread: TorchThread) -> None:
        """Run the engine loop on the worker's torch thread (see workers/torch_thread.py) until stop()."""
        self._loop_done = torch_thread.submit(self._loop)

    def stop(self) -> None:
        self._stopping.set()
        if self._loop_done is not None:
            concurrent.futures.wait([self._loop_done], timeout=10)

    def call_in_loop(self, job: Callable[[], None]) -> None:
        """Run job on the loop's thread between two steps (nothing else runs meanwhile); wait for it."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                job()
                done.set_result(None)
            except BaseException as exc:
                done.set_exception(exc)

        self._inbox.put(run)
        done.result()

    def close(self, timeout_s: float) -> None:
        """Hand every request back to the queue, wait (up to timeout_s) until their tasks let go, stop."""
        self.hand_back()
        deadline = time.monotonic() + timeout_s
        while self.num_active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()

    @property
    def num_active(self) -> int:
        return len(self._claimed)

    def claimed_ids(self) -> list[str]:
        """Requests whose leases the heartbeat renews."""
        with self._claimed_lock:
            return list(self._claimed)

    def run(self, request_id: str) -> None:
        """Generate for a stored request, streaming its events; returns when the request has ended
        here (finished, cancelled, failed, or handed back to the queue)."""
        found = bus.load_request(self.redis, request_id)
        if found is None:
            log.warning("request %s is unknown or expired; nothing to do", request_id)
            return
        request = found[0]
        if request.model != self.loaded.name:
            raise WrongModel(
                f"request {request_id} is for {request.model!r}; this worker serves {self.loaded.name!r}"
            )
        self.last_request_at = time.time()
        with self.holding(request) as claimed:
            if not claimed:
                return  # cancelled while queued, or a duplicate delivery of a request someone else runs
            active = self._resume(request)
            self._inbox.put(active)
            active.done.wait()

    @contextlib.contextmanager
    def holding(self, request: GenerationRequest) -> Iterator[bool]:
        """Claim a request for the duration of the block (False if it could not be claimed);
        the heartbeat renews its lease meanwhile."""
        if not lifecycle.claim(self.redis, request, self.worker_id, self.settings.worker_ttl_s):
            yield False
            return
        with self._claimed_lock:
            self._claimed.add(request.request_id)
        try:
            yield True
        finally:
            with self._claimed_lock:
                self._claimed.discard(request.request_id)

    def hand_back(self) -> None:
        """Give every request back to the queue (after a drain timeout); they continue elsewhere."""
        self._inbox.put(_HAND_BACK)

    def _resume(self, request: GenerationRequest) -> ActiveRequest:
        """The request's state, continued from whatever its stream already holds."""
        tokenizer = self.loaded.tokenizer
        active = ActiveRequest(
            request, prompt_ids(tokenizer, request), TextOutput(tokenizer, request.params.stop)
        )
        events = [
            e
            for e in bus.read_events(self.redis, request.request_id, count=None)
            if isinstance(e, TokenEvent)
        ]
        if events:
            active.prior_ids = [t for e in events for t in e.token_ids]
            active.output.resume(active.prior_ids, num_sent=sum(len(e.text) for e in events))
            active.next_index = events[-1].index + 1
            active.is_started = True
            log.info("resuming %s after %d tokens", request.request_id, len(active.prior_ids))
        return active

    # --- the loop thread ---

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._admit(block=not self.engine.has_work())
                if not self.engine.has_work():
                    continue
                step_started = time.time()
                outputs = self.engine.step()
                self._publish(outputs, step_started)
            except Exception as exc:  # one bad step must not kill the worker: fail what it touched
                log.exception("engine step failed")
                self._fail_all(f"engine error: {exc}")

    def _admit(self, block: bool) -> None:
        try:
            item = self._inbox.get(timeout=0.2) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(item, str):
                self._hand_back_all()
            elif callable(item):
                item()
            else:
                try:
                    self.engine.add_request(
                        item.request_id,
                        item.prompt_ids,
                        sampling_options(item.request),
                        output_ids=item.prior_ids,
                    )
                    self._active[item.request_id] = item
                    item.admitted_at = time.time()
                except ValueError as exc:  # e.g. a prompt that does not fit the context
                    self._end(item, FinishReason.ERROR, error=str(exc))
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _publish(self, outputs: list[StepOutput], step_started: float) -> None:
        """Append every request's new text, and the end of finished ones, in one round trip.

        The same round trip reads the cancel flags of the requests still running, so a
        DELETE takes effect before the next step.
        """
        writes = Writes()
        now = time.time()
        ended: list[ActiveRequest] = []
        for out in outputs:
            active = self._active[out.seq_id]
            rid = active.request_id
            if not active.is_started:
                active.is_started = True
                state = RequestState(
                    status=RequestStatus.RUNNING,
                    worker_id=self.worker_id,
                    started_at=step_started,
                    first_token_at=now,
                )
                writes.add(bus.update_state, rid, state)
                writes.add(bus.expire_request, rid, self.settings.stream_ttl_s)
            active.pending_ids.append(out.token_id)
            if out.logprob is not None:
                active.pending_logprobs.append(self._token_logprob(out))
            piece = active.output.push(out.token_id)
            reason = FinishReason(out.finish_reason) if out.finish_reason else None
            if reason is None and active.output.stopped:  # a stop string matched in the text
                self.engine.abort(rid)
                reason = FinishReason.STOP
            if reason is not None:
                piece += active.output.finish()
            self._add_text(writes, active, piece)
            if reason is not None:
                usage = Usage(
                    prompt_tokens=out.num_prompt_tokens,
                    completion_tokens=out.num_output_tokens,
                    total_tokens=out.num_prompt_tokens + out.num_output_tokens,
                )
                self._add_end(writes, active, reason, usage, largest_batch=out.largest_batch, now=now)
                ended.append(active)
        ended_ids = {a.request_id for a in ended}
        running = [rid for rid in self._active if rid not in ended_ids]
        if running:
            writes.add(bus.queue_cancel_check, running)
        replies = self._write(writes)
        for active in ended:
            self._finished(active, now)
        if running and isinstance(replies[-1], list):
            for rid, flag in zip(running, replies[-1], strict=True):
                if flag is not None:
                    self._stop(self._active[rid], FinishReason.CANCELLED)
        for rid in running:
            late = self._active.get(rid)
            if late is not None and late.deadline is not None and now >= late.deadline:
                self._stop(late, FinishReason.TIMEOUT)

    def _add_text(self, writes: Writes, active: ActiveRequest, piece: str) -> None:
        if piece:
            asked = active.request.params.logprobs is not None
            event = TokenEvent(
                index=active.next_index,
                text=piece,
                token_ids=active.pending_ids,
                logprobs=active.pending_logprobs if asked else None,
            )
            writes.add(bus.append_event, active.request_id, event)
            active.next_index += 1
            active.pending_ids = []
            active.pending_logprobs = []

    def _token_logprob(self, out: StepOutput) -> TokenLogprob:
        text = self._token_text
        top = [TopLogprob(token_id=t, token=text(t), logprob=lp) for t, lp in out.top_logprobs or []]
        return TokenLogprob(
            token_id=out.token_id, token=text(out.token_id), logprob=out.logprob or 0.0, top=top
        )

    def _token_text(self, token_id: int) -> str:
        """One token alone as text (special tokens shown), cached: logprobs name every token."""
        text = self._token_texts.get(token_id)
        if text is None:
            text = self._token_texts[token_id] = self.loaded.tokenizer.decode([token_id])
        return text

    def _add_end(
        self,
        writes: Writes,
        active: ActiveRequest,
        reason: FinishReason,
        usage: Usage,
        now: float,
        largest_batch: int | None = None,
        error: str | None = None,
    ) -> None:
        rid = active.request_id
        if error is not None:
            writes.add(bus.append_event, rid, ErrorEvent(index=active.next_index, message=error))
        else:
            writes.add(
                bus.append_event, rid, DoneEvent(index=active.next_index, finish_reason=reason, usage=usage)
            )
        active.next_index += 1
        status = _FINISH_STATUS.get(reason, RequestStatus.FINISHED)
        state = RequestState(
            status=status,
            finished_at=now,
            finish_reason=reason,
            usage=usage,
            error=error,
            largest_batch=largest_batch,
            worker_id=self.worker_id,
        )
        writes.add(bus.update_state, rid, state)
        writes.add(bus.expire_request, rid, self.settings.stream_ttl_s)
        writes.add(lifecycle.release, rid)

    def _write(self, writes: Writes) -> list[object]:
        """Apply a step's writes, waiting out a Redis outage: nothing is dropped, the step just waits."""
        while True:
            try:
                return writes.execute(self.redis)
            except redis.RedisError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("Redis unavailable (%s); holding the step's writes and retrying", exc)
                time.sleep(0.5)

    def _finished(self, active: ActiveRequest, now: float) -> None:
        self._active.pop(active.request_id, None)
        took = now - active.admitted_at
        self.mean_request_s = took if self.mean_request_s is None else 0.8 * self.mean_request_s + 0.2 * took
        active.done.set()

    def _usage(self, active: ActiveRequest) -> Usage:
        seq = self.engine.seqs.get(active.request_id)
        n_out = len(seq.output_ids) if seq is not None else len(active.prior_ids)
        n_prompt = len(active.prompt_ids)
        return Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out)

    def _stop(self, active: ActiveRequest, reason: FinishReason) -> None:
        """Stop a request that was cancelled or ran out of time; its slot is free for the next step."""
        usage = self._usage(active)
        self.engine.abort(active.request_id)
        writes = Writes()
        self._add_text(writes, active, active.output.finish())
        now = time.time()
        self._add_end(writes, active, reason, usage, now=now)
        self._write(writes)
        self._finished(active, now)

    def _end(self, active: ActiveRequest, reason: FinishReason, error: str | None = None) -> None:
        """End one request outside a normal step (refused or failed), and wake its task."""
        usage = self._usage(active)
        self.engine.abort(active.request_id)
        writes = Writes()
        self._add_end(writes, active, reason, usage, now=time.time(), error=error)
        try:
            self._write(writes)
        finally:
            self._active.pop(active.request_id, None)
            active.done.set()

    def _hand_back_all(self) -> None:
        """Requeue every request here; the next worker resumes each from its stream."""
        for active in list(self._active.values()):
            self.engine.abort(active.request_id)
            self._active.pop(active.request_id, None)
            result = lifecycle.requeue(
                self.redis,
                active.request,
                owner=self.worker_id,
                max_attempts=self.settings.max_attempts,
                ttl_s=self.settings.stream_ttl_s,
            )
            if result == "requeued":
                self.enqueue(active.request)
            log.info("handed %s back to the queue (%s)", active.request_id, result)
            active.done.set()

    def _fail_all(self, message: str) -> None:
        for active in list(self._active.values()):
            try:
                self._end(active, FinishReason.ERROR, error=message)
            except redis.RedisError:
                log.exception("could not record the failure of %s", active.request_id)
