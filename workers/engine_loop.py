"""The loop thread of a worker: admit, `engine.step()`, publish, then apply cancels and timeouts.

It is the only thread that touches the engine. Everything else reaches it through the inbox,
a queue of jobs it runs between two steps (admitting a request, handing every request back,
a call that needs the model to itself).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import redis

from shared import bus, logs
from shared.messages import FinishReason, GenerationRequest, Usage
from shared.redact import redact
from shared.settings import Settings
from workers.engine import LLMEngine, SamplingOptions, SequenceStatus, StepOutput, TokenConstraint
from workers.hand_back import hand_back
from workers.liveness import Liveness
from workers.request_stream import ActiveRequest, StreamWrites
from workers.token_text import TokenText

log = logging.getLogger(__name__)
Job = Callable[[], None]  # what the inbox holds: work for the loop thread, run between two steps
IDLE_WAIT_S = 0.2  # with nothing to step, how long the loop waits for a job before it looks again


def sampling_options(
    request: GenerationRequest, constraint: TokenConstraint | None = None
) -> SamplingOptions:
    """The engine's sampling options for a request's parameters: the same fields, bar the stop strings
    (matched on text, outside the engine) and the JSON schema (the engine gets its `constraint`)."""
    return SamplingOptions(
        **request.params.model_dump(exclude={"stop", "json_schema"}), constraint=constraint
    )


class EngineLoop:
    def __init__(
        self,
        engine: LLMEngine,
        token_text: TokenText,
        client: redis.Redis,
        settings: Settings,
        worker_id: str,
        enqueue: Callable[[GenerationRequest], None],
    ) -> None:
        self.engine = engine
        self.token_text = token_text
        self.redis = client
        self.settings = settings
        self.worker_id = worker_id
        self.enqueue = enqueue  # puts a requeued request's task back on its model's queue
        self.mean_request_s: float | None = None  # recent average time a request spends in the engine
        self.stopping = threading.Event()
        self.liveness = Liveness(settings.worker_alive_file)
        self._inbox: queue.Queue[Job] = queue.Queue()
        self._active: dict[str, ActiveRequest] = {}
        # Requests put in since the last step, with the step they join: their timeline steps go out
        # with that step's writes, not in round trips of their own on the engine's thread.
        self._admitted: list[tuple[ActiveRequest, int]] = []

    def put(self, job: Job) -> None:
        """Queue a job for the loop thread; it runs before the next step."""
        self._inbox.put(job)

    def run(self) -> None:
        """The loop itself, until `stopping` is set."""
        while not self.stopping.is_set():
            self.liveness.touch()
            try:
                self._run_jobs(block=not self.engine.has_work())
                if not self.engine.has_work():
                    continue
                step_started = time.time()
                outputs = self.engine.step()
                checks = self._publish(outputs, step_started)
                self._apply_checks(checks)
            except Exception as exc:  # one bad step must not kill the worker: fail what it touched
                log.exception("engine step failed")
                self._fail_all(f"engine error: {redact(str(exc))}")

    def _run_jobs(self, block: bool) -> None:
        """Run the jobs in the inbox; wait for the first when idle."""
        try:
            job = self._inbox.get(timeout=IDLE_WAIT_S) if block else self._inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            job()
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return

    # --- jobs ---

    def add(self, active: ActiveRequest) -> None:
        """Put a claimed request into the engine; one that cannot fit ends with its reason."""
        try:
            self.engine.add_request(
                active.request_id,
                active.prompt_ids,
                sampling_options(active.request, active.constraint),
                output_ids=active.prior_ids,
                group=active.request.owner,
            )
        except ValueError as exc:  # e.g. a prompt that does not fit the context
            self._end(active, FinishReason.ERROR, error=str(exc))
            return
        self._active[active.request_id] = active
        active.admitted_at = time.time()
        log.info("admitted %s (%d prompt tokens, %d resumed)", active.request_id, len(active.prompt_ids),
                 len(active.prior_ids), extra=logs.about(active.request_id))  # fmt: skip
        self._admitted.append((active, self.engine.stats.num_steps + 1))

    def hand_back_all(self) -> None:
        """Requeue every request here; the next worker resumes each from its stream."""
        self._admitted = []  # none of them runs here after all
        for active in list(self._active.values()):
            self.engine.abort(active.request_id)
            self._active.pop(active.request_id, None)
            hand_back(self.redis, active.request, self.settings, self.worker_id, self.enqueue)
            active.done.set()

    # --- a step's results ---

    def _publish(self, outputs: list[StepOutput], step_started: float) -> dict[str, str]:
        """Append every request's new text, and the end of finished ones, in one round trip; the same
        round trip checks the requests still running. Returns {id: "gone" or "cancel"} for those that
        must stop."""
        writes = self._writes()
        for active, step in self._admitted:
            writes.admitted(active, step)
        self._admitted = []
        now = time.time()
        ended = [a for out in outputs if (a := self._record(writes, out, step_started, now)) is not None]
        ended_ids = {a.request_id for a in ended}
        running = [a for rid, a in self._active.items() if rid not in ended_ids]
        writes.check_running(running)  # its reply stays the last
        replies = writes.apply(self.redis, self.keep_trying)
        for active in ended:
            self._finished(active, now)
        checks: list[str] = replies[-1] if running else []  # type: ignore[assignment]
        found = {a.request_id: check for a, check in zip(running, checks, strict=True) if check}
        found.update({rid: "lost" for rid in writes.lost if rid not in ended_ids})
        if writes.retried:
            found = {**self._verify_streams(), **found}  # a record that is gone stays gone
        return found

    def _verify_streams(self) -> dict[str, str]:
        """After Redis came back, find the streams it lost events of (a restart without the last second
        of its data): {id: "truncated"}. Their next event would leave a gap, so they end with an error."""
        lost = {}
        for rid, active in self._active.items():
            if active.is_started and bus.last_index(self.redis, rid) < active.next_index - 1:
                lost[rid] = "truncated"
        return lost

    def _record(
        self, writes: StreamWrites, out: StepOutput, step_started: float, now: float
    ) -> ActiveRequest | None:
        """One new token of one request into the writes; returns the request if that ended it."""
        active = self._active[out.seq_id]
        if out.error is not None:  # its part of the step failed; the rest of the batch ran on
            log.warning("request %s failed in the engine: %s", out.seq_id, out.error,
                        extra=logs.about(out.seq_id))  # fmt: skip
            usage = Usage.of(out.num_prompt_tokens, out.num_output_tokens)
            writes.end(active, FinishReason.ERROR, usage, now, error=f"engine error: {redact(out.error)}")
            return active
        if not active.is_started:
            writes.start(active, started_at=step_started, first_token_at=now)
        if out.prompt_logprobs is not None:
            active.prompt_logprobs = [self.token_text.prompt_logprob(p) for p in out.prompt_logprobs]
        piece = ""
        if out.token_id is not None:  # None: zero new tokens were asked for; the prompt is done
            writes.token(active, now)
            active.pending_ids.append(out.token_id)
            if out.logprob is not None:
                active.pending_logprobs.append(self.token_text.logprob(out.token_id, out))
            piece = active.output.push(out.token_id)
        reason = FinishReason(out.finish_reason) if out.finish_reason else None
        if reason is None and active.output.stopped:  # a stop string matched in the text
            self.engine.finish(out.seq_id, SequenceStatus.FINISHED_STOPPED)
            reason = FinishReason.STOP
        if reason is not None:
            piece += active.output.finish()
        writes.text(active, piece, final=reason is not None)
        if reason is None:
            return None
        usage = Usage.of(out.num_prompt_tokens, out.num_output_tokens)
        writes.end(active, reason, usage, now, largest_batch=out.largest_batch)
        return active

    def _apply_checks(self, checks: dict[str, str]) -> None:
        """Drop the requests whose record is gone, stop the cancelled ones, then those past their timeout."""
        for rid, check in checks.items():
            active = self._active.get(rid)
            if active is None:
                continue
            if check == "gone":
                self._drop(active)
            elif check == "lost":
                self._let_go(active)
            elif check == "truncated":
                message = "Redis restarted and lost the last events of this stream; generation stopped"
                self._end(
                    active, FinishReason.ERROR, error=message, resume_at=bus.last_index(self.redis, rid) + 1
                )
            else:
                self._stop(active, FinishReason.CANCELLED)
        now = time.time()
        for active in list(self._active.values()):
            if active.deadline is not None and now >= active.deadline:
                self._stop(active, FinishReason.TIMEOUT)

    # --- ending requests ---

    def _stop(self, active: ActiveRequest, reason: FinishReason) -> None:
        """Stop a request that was cancelled or ran out of time; its slot is free for the next step."""
        usage = self._usage(active)
        self.engine.abort(active.request_id)
        writes = self._writes()
        writes.text(active, active.output.finish())
        now = time.time()
        writes.end(active, reason, usage, now)
        writes.apply(self.redis, self.keep_trying)
        self._finished(active, now)

    def _drop(self, active: ActiveRequest) -> None:
        """Stop generating for a request whose record is gone (expired, or lost with Redis's data):
        nobody can read what it would write, so nothing is written but the cleanup."""
        log.warning("request %s: its record is gone; generation stops", active.request_id,
                    extra=logs.about(active.request_id))  # fmt: skip
        self.engine.abort(active.request_id)
        writes = self._writes()
        writes.forget(active)
        writes.apply(self.redis, self.keep_trying)
        self._active.pop(active.request_id, None)
        active.done.set()

    def _let_go(self, active: ActiveRequest) -> None:
        """Stop a request another worker's claim holds now (this one was paused past its lease): that
        worker writes its stream and its end, so this one writes nothing more for it."""
        log.warning("request %s: another worker holds it now; generation here stops", active.request_id,
                    extra=logs.about(active.request_id))  # fmt: skip
        self.engine.abort(active.request_id)
        self._active.pop(active.request_id, None)
        active.done.set()

    def _end(
        self,
        active: ActiveRequest,
        reason: FinishReason,
        error: str | None = None,
        resume_at: int | None = None,
    ) -> None:
        """End one request outside a normal step (refused or failed), and wake its task. `resume_at` puts
        the last event at that index (after a stream lost its tail), so the stream has no gap."""
        if resume_at is not None:
            active.next_index = resume_at
        usage = self._usage(active)
        self.engine.abort(active.request_id)
        writes = self._writes()
        writes.end(active, reason, usage, now=time.time(), error=error)
        try:
            writes.apply(self.redis, self.keep_trying)
        finally:
            self._active.pop(active.request_id, None)
            active.done.set()

    def _fail_all(self, message: str) -> None:
        self._admitted = []
        for active in list(self._active.values()):
            try:
                self._end(active, FinishReason.ERROR, error=message)
            except redis.RedisError:
                log.exception("could not record the failure of %s", active.request_id)

    def _finished(self, active: ActiveRequest, now: float) -> None:
        self._active.pop(active.request_id, None)
        took = now - active.admitted_at
        self.mean_request_s = took if self.mean_request_s is None else 0.8 * self.mean_request_s + 0.2 * took
        active.done.set()

    def _usage(self, active: ActiveRequest) -> Usage:
        seq = self.engine.seqs.get(active.request_id)
        n_out = len(seq.output_ids) if seq is not None else len(active.prior_ids)
        return Usage.of(len(active.prompt_ids), n_out)

    def _writes(self) -> StreamWrites:
        return StreamWrites(self.worker_id, self.settings.stream_ttl_s)

    def keep_trying(self) -> bool:
        return not self.stopping.is_set()
