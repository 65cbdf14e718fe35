"""Connects one engine to Redis: a loop thread steps the engine and publishes each step's tokens.

Celery task threads call `run(request_id)`, which hands the request to the loop and
waits until it ends. The loop is the only thread that touches the engine.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import redis

from shared import bus
from shared.messages import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    TokenEvent,
    Usage,
)
from shared.settings import Settings
from workers.engine import LLMEngine, SamplingOptions, StepOutput
from workers.model_loader import LoadedModel
from workers.text_output import TextOutput

log = logging.getLogger(__name__)
_FINISH_STATUS = {FinishReason.CANCELLED: RequestStatus.CANCELLED, FinishReason.ERROR: RequestStatus.FAILED}


@dataclass
class ActiveRequest:
    request: GenerationRequest
    prompt_ids: list[int]
    output: TextOutput
    done: threading.Event = field(default_factory=threading.Event)
    next_index: int = 0  # index of the next event on the request's stream
    is_started: bool = False
    admitted_at: float = 0.0

    @property
    def request_id(self) -> str:
        return self.request.request_id


def context_length(loaded: LoadedModel, settings: Settings) -> int:
    """MAX_MODEL_LEN when set, else the model's own context capped at 2048 (the KV cache is sized by it)."""
    own = int(getattr(loaded.model.config, "max_position_embeddings", 2048) or 2048)
    return min(own, settings.max_model_len) if settings.max_model_len else min(own, 2048)


def sampling_options(request: GenerationRequest) -> SamplingOptions:
    p = request.params
    return SamplingOptions(
        max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, seed=p.seed
    )


class EngineService:
    def __init__(self, loaded: LoadedModel, settings: Settings, client: redis.Redis, worker_id: str) -> None:
        self.loaded = loaded
        self.settings = settings
        self.redis = client
        self.worker_id = worker_id
        self.max_model_len = context_length(loaded, settings)
        eos = loaded.tokenizer.eos_token_id
        self.engine = LLMEngine(
            loaded.model, settings.max_batch, self.max_model_len, set() if eos is None else {eos}
        )
        # One forward pass at a time: engine steps and the no-batching baseline share the model.
        self.model_lock = threading.Lock()
        self._inbox: queue.Queue[ActiveRequest] = queue.Queue()
        self._active: dict[str, ActiveRequest] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self.mean_request_s: float | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    @property
    def num_active(self) -> int:
        return len(self._active)

    def run(self, request_id: str) -> None:
        """Generate for a stored request, streaming its events; returns when the request has ended."""
        loaded = bus.load_request(self.redis, request_id)
        if loaded is None:
            log.warning("request %s is unknown or expired; nothing to do", request_id)
            return
        request, _ = loaded
        if not bus.claim_request(self.redis, request_id, self.worker_id):
            return  # cancelled while queued, or a redelivered task whose request already ended
        active = ActiveRequest(
            request,
            self.loaded.tokenizer.encode(request.prompt),
            TextOutput(self.loaded.tokenizer, request.params.stop),
        )
        self._inbox.put(active)
        active.done.wait()

    # --- the loop thread ---

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._admit(block=not self.engine.has_work())
                if not self.engine.has_work():
                    continue
                step_started = time.time()
                with self.model_lock:
                    outputs = self.engine.step()
                self._publish(outputs, step_started)
            except Exception as exc:  # one bad step must not kill the worker: fail what it touched
                log.exception("engine step failed")
                self._fail_all(f"engine error: {exc}")

    def _admit(self, block: bool) -> None:
        try:
            active = self._inbox.get(timeout=0.2) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            try:
                self.engine.add_request(
                    active.request_id, active.prompt_ids, sampling_options(active.request)
                )
                self._active[active.request_id] = active
                active.admitted_at = time.time()
            except ValueError as exc:  # e.g. a prompt that does not fit the context
                self._end(active, FinishReason.ERROR, error=str(exc))
            try:
                active = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _publish(self, outputs: list[StepOutput], step_started: float) -> None:
        """Append every request's new text, and the end of finished ones, in one round trip.

        The same round trip reads the cancel flags of the requests still running, so a
        DELETE takes effect before the next step.
        """
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        ended: list[ActiveRequest] = []
        for out in outputs:
            active = self._active[out.seq_id]
            rid = active.request_id
            if not active.is_started:
                active.is_started = True
                bus.update_state(
                    pipe,
                    rid,
                    RequestState(
                        status=RequestStatus.RUNNING,
                        worker_id=self.worker_id,
                        started_at=step_started,
                        first_token_at=now,
                    ),
                )
                bus.expire_request(pipe, rid, self.settings.stream_ttl_s)
            piece = active.output.push(out.token_id)
            reason = FinishReason(out.finish_reason) if out.finish_reason else None
            if reason is None and active.output.stopped:  # a stop string matched in the text
                self.engine.abort(rid)
                reason = FinishReason.STOP
            if reason is not None:
                piece += active.output.finish()
            if piece:
                bus.append_event(pipe, rid, TokenEvent(index=active.next_index, text=piece))
                active.next_index += 1
            if reason is not None:
                usage = Usage(
                    prompt_tokens=out.num_prompt_tokens,
                    completion_tokens=out.num_output_tokens,
                    total_tokens=out.num_prompt_tokens + out.num_output_tokens,
                )
                self._write_end(pipe, active, reason, usage, largest_batch=out.largest_batch, now=now)
                ended.append(active)
        ended_ids = {a.request_id for a in ended}
        running = [rid for rid in self._active if rid not in ended_ids]
        if running:
            bus.queue_cancel_check(pipe, running)
        replies = pipe.execute()
        for active in ended:
            self._finished(active, now)
        if running:
            for rid, flag in zip(running, replies[-1], strict=True):
                if flag is not None:
                    self._cancel(self._active[rid])

    def _write_end(
        self,
        pipe: bus.Pipeline,
        active: ActiveRequest,
        reason: FinishReason,
        usage: Usage,
        now: float,
        largest_batch: int | None = None,
        error: str | None = None,
    ) -> None:
        rid = active.request_id
        if error is not None:
            bus.append_event(pipe, rid, ErrorEvent(index=active.next_index, message=error))
        else:
            bus.append_event(pipe, rid, DoneEvent(index=active.next_index, finish_reason=reason, usage=usage))
        active.next_index += 1
        status = _FINISH_STATUS.get(reason, RequestStatus.FINISHED)
        bus.update_state(
            pipe,
            rid,
            RequestState(
                status=status,
                finished_at=now,
                finish_reason=reason,
                usage=usage,
                error=error,
                largest_batch=largest_batch,
                worker_id=self.worker_id,
            ),
        )
        bus.expire_request(pipe, rid, self.settings.stream_ttl_s)

    def _finished(self, active: ActiveRequest, now: float) -> None:
        self._active.pop(active.request_id, None)
        took = now - active.admitted_at
        self.mean_request_s = took if self.mean_request_s is None else 0.8 * self.mean_request_s + 0.2 * took
        active.done.set()

    def _cancel(self, active: ActiveRequest) -> None:
        """Stop a request whose cancel flag is set; its slot is free for the next step."""
        seq = self.engine.seqs.get(active.request_id)
        n_out = len(seq.output_ids) if seq is not None else 0
        self.engine.abort(active.request_id)
        n_prompt = len(active.prompt_ids)
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=n_out, total_tokens=n_prompt + n_out)
        pipe = self.redis.pipeline(transaction=False)
        tail = active.output.finish()
        if tail:
            bus.append_event(pipe, active.request_id, TokenEvent(index=active.next_index, text=tail))
            active.next_index += 1
        now = time.time()
        self._write_end(pipe, active, FinishReason.CANCELLED, usage, now=now)
        pipe.execute()
        self._finished(active, now)

    def _end(self, active: ActiveRequest, reason: FinishReason, error: str | None = None) -> None:
        """End one request outside a normal step (refused or failed), and wake its task."""
        n_prompt = len(active.prompt_ids)
        usage = Usage(prompt_tokens=n_prompt, completion_tokens=0, total_tokens=n_prompt)
        pipe = self.redis.pipeline(transaction=False)
        self._write_end(pipe, active, reason, usage, now=time.time(), error=error)
        try:
            pipe.execute()
        finally:
            self._active.pop(active.request_id, None)
            active.done.set()

    def _fail_all(self, message: str) -> None:
        for active in list(self._active.values()):
            self.engine.abort(active.request_id)
            try:
                self._end(active, FinishReason.ERROR, error=message)
            except redis.RedisError:
                log.exception("could not record the failure of %s", active.request_id)
