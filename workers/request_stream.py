"""What a request writes while a worker runs it: its state, its text, and its end, one round trip at a time.

A step's writes for every request it touched are recorded in one `StreamWrites` and applied in
one pipelined round trip. Applying them again after a failed attempt is safe (see
workers/redis_writes.py), so a Redis outage only delays them: nothing is dropped.

Every write for a request is fenced by its claim's epoch (shared/fence.py): a worker that lost the
request (paused past its lease while another took it over) writes nothing for it, and learns so from
the same round trip's reply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from shared import bus, fence, fleet, lifecycle, logs, metrics, ratelimit, timeline
from shared.messages import (
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationRequest,
    PromptTokenLogprob,
    RequestState,
    RequestStatus,
    TokenEvent,
    TokenLogprob,
    Usage,
)
from workers.engine import TokenConstraint
from workers.redis_writes import Writes
from workers.text_output import TextOutput

log = logging.getLogger(__name__)
_FINISH_STATUS = {FinishReason.CANCELLED: RequestStatus.CANCELLED, FinishReason.ERROR: RequestStatus.FAILED}
RETRY_S = 0.5  # between attempts while Redis is unreachable


@dataclass
class ActiveRequest:
    """A request this worker runs: its prompt, its text so far, and where its stream stands."""

    request: GenerationRequest
    prompt_ids: list[int]
    output: TextOutput
    epoch: int = 0  # this worker's claim (shared/lifecycle.py): every write for the request carries it
    prior_ids: list[int] = field(default_factory=list)  # tokens a previous worker already streamed
    done: threading.Event = field(default_factory=threading.Event)
    next_index: int = 0  # index of the next event on the request's stream
    pending_ids: list[int] = field(default_factory=list)  # tokens whose text is not in an event yet
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[PromptTokenLogprob] | None = None  # sent with the next event, once
    constraint: TokenConstraint | None = None  # the response format's (structured output)
    is_started: bool = False
    admitted_at: float = 0.0
    first_token_at: float | None = None  # on this worker (None for a request resumed here)
    last_token_at: float | None = None  # for inter-token latency; None until a token came here
    tokens_counted: int = 0  # tokens made here that the generation-tokens counter has

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def deadline(self) -> float | None:
        timeout = self.request.timeout_s
        return None if timeout is None else self.request.created_at + timeout


class StreamWrites:
    """The writes of one round trip: requests starting, new text, requests ending, and cancel checks."""

    def __init__(self, worker_id: str, ttl_s: int) -> None:
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self.retried = False  # Redis failed at least once meanwhile: it may have lost earlier writes
        self.lost: set[str] = set()  # after apply: requests another claim holds (nothing was written)
        self._writes = Writes(worker_id)

    def labels(self, active: ActiveRequest) -> dict[str, str]:
        return {"model_name": active.request.model, "worker": self.worker_id}

    def admitted(self, active: ActiveRequest, step: int) -> None:
        """The request joined the batch at engine step `step` (a timeline step only)."""
        self._of(active).add(
            timeline.append,
            active.request_id,
            "admitted",
            active.admitted_at,
            worker=self.worker_id,
            step=step,
        )

    def start(self, active: ActiveRequest, started_at: float, first_token_at: float) -> None:
        """The request is running here and has its first token."""
        active.is_started = True
        active.first_token_at = first_token_at
        created, labels, tally = active.request.created_at, self.labels(active), self._tally(active)
        tally.observe(metrics.TTFT, labels, first_token_at - created)
        tally.observe(metrics.QUEUE, labels, max(0.0, active.admitted_at - created))
        tally.observe(metrics.PREFILL, labels, max(0.0, first_token_at - active.admitted_at))
        state = RequestState(
            status=RequestStatus.RUNNING,
            worker_id=self.worker_id,
            started_at=started_at,
            first_token_at=first_token_at,
        )
        writes = self._of(active)
        writes.add(bus.update_state, active.request_id, state)
        ttft = first_token_at - active.request.created_at
        writes.add(timeline.append, active.request_id, "first_token", first_token_at, worker=self.worker_id,
                   ttft_s=round(ttft, 6))  # fmt: skip
        writes.add(fleet.note_ttft, active.request.model, ttft)

    def token(self, active: ActiveRequest, now: float) -> None:
        """A new token came out of this step: the time since the previous one is an inter-token latency."""
        if active.last_token_at is not None:
            self._tally(active).observe(metrics.ITL, self.labels(active), now - active.last_token_at)
        active.last_token_at = now

    def text(self, active: ActiveRequest, piece: str, final: bool = False) -> None:
        """A token event with `piece` and the tokens it completes (nothing when the piece is empty, unless
        the prompt's logprobs wait to go out, or it is the `final` text and token logprobs wait: a last
        token with no text of its own, such as EOS, keeps its logprob)."""
        asked = active.request.params.logprobs is not None
        if not piece and active.prompt_logprobs is None and not (final and asked and active.pending_logprobs):
            return
        event = TokenEvent(
            index=active.next_index,
            text=piece,
            token_ids=active.pending_ids,
            logprobs=active.pending_logprobs if asked else None,
            at=time.time(),
            prompt_logprobs=active.prompt_logprobs,
            num_prompt_tokens=len(active.prompt_ids) if active.next_index == 0 else None,
        )
        active.prompt_logprobs = None
        self._of(active).add(bus.append_event, active.request_id, event)
        # Counted with the event that carries them, so the count moves with the stream (as vLLM counts
        # per step) and a token lost with a crashed worker, made again by the next, counts once.
        if active.pending_ids:
            self._tally(active).count(metrics.GENERATION_TOKENS, self.labels(active), len(active.pending_ids))
            active.tokens_counted += len(active.pending_ids)
        active.next_index += 1
        active.pending_ids = []
        active.pending_logprobs = []

    def end(
        self,
        active: ActiveRequest,
        reason: FinishReason,
        usage: Usage,
        now: float,
        largest_batch: int | None = None,
        error: str | None = None,
    ) -> None:
        """The last event (done, or error when `error` is given), the final state, and the lease's end."""
        rid = active.request_id
        last = (
            ErrorEvent(index=active.next_index, message=error)
            if error is not None
            else DoneEvent(index=active.next_index, finish_reason=reason, usage=usage)
        )
        writes = self._of(active)
        writes.add(bus.append_event, rid, last)
        active.next_index += 1
        state = RequestState(
            status=_FINISH_STATUS.get(reason, RequestStatus.FINISHED),
            finished_at=now,
            finish_reason=reason,
            usage=usage,
            error=error,
            largest_batch=largest_batch,
            worker_id=self.worker_id,
        )
        writes.add(bus.update_state, rid, state)
        writes.add(timeline.append, rid, state.status.value, now, worker=self.worker_id,
                   finish_reason=reason.value, error=error, tokens=usage.completion_tokens)  # fmt: skip
        writes.add(bus.expire_request, rid, self.ttl_s)
        writes.add(lifecycle.release, rid)
        log.info("%s ended here: %s, %d tokens", rid, reason.value, usage.completion_tokens,
                 extra=logs.about(rid))  # fmt: skip
        labels, tally = self.labels(active), self._tally(active)
        tally.observe(metrics.E2E, labels, now - active.request.created_at)
        tally.observe(metrics.DECODE, labels, now - (active.first_token_at or active.admitted_at or now))
        tally.count(metrics.SUCCESS, {**labels, "finished_reason": reason.value})
        tally.count(metrics.PROMPT_TOKENS, labels, usage.prompt_tokens)
        # Tokens no event carried (a last token with no text): the rest of what this worker made.
        rest = usage.completion_tokens - len(active.prior_ids) - active.tokens_counted
        if rest > 0:
            tally.count(metrics.GENERATION_TOKENS, labels, rest)
        if active.request.charge is not None:  # give back what its key reserved and it did not use
            owed = ratelimit.refund_of(active.request.charge, usage.prompt_tokens + usage.completion_tokens)
            if owed is not None:
                writes.refunds.append(owed)

    def _of(self, active: ActiveRequest) -> fence.RequestWrites:
        """This round trip's writes for one request, fenced by its epoch."""
        return self._writes.fenced(active.request_id, active.epoch)

    def _tally(self, active: ActiveRequest) -> metrics.Tally:
        """This round trip's metrics of one request: added only if its writes are (fenced with them)."""
        return self._of(active).tally

    def check_running(self, running: list[ActiveRequest]) -> None:
        """Check these running requests in the same round trip: the last reply lists, per request, "gone",
        "lost", "cancel" or "" (see shared.lifecycle.check_running)."""
        if running:
            self._writes.add(
                lifecycle.check_running, [a.request_id for a in running], [a.epoch for a in running]
            )

    def forget(self, active: ActiveRequest) -> None:
        """A request whose record is gone: remove what this step's writes recreated, and its lease."""
        self._writes.add(bus.delete_request, active.request_id)
        self._writes.add(lifecycle.release, active.request_id)

    def apply(self, client: redis.Redis, keep_trying: Callable[[], bool]) -> list[object]:
        """Apply every write, waiting out a Redis outage while keep_trying() says so; replies in order
        (the fenced writes' first). Requests found held by another claim land in `lost`."""
        while True:
            try:
                replies = self._writes.execute(client)
                self.lost = self._writes.lost(replies)
                return replies
            except redis.RedisError as exc:
                if not keep_trying():
                    raise
                self.retried = True
                log.warning("Redis unavailable (%s); holding the writes and retrying", exc)
                time.sleep(RETRY_S)
