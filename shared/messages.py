"""The messages that cross Redis, as versioned pydantic models.

Each message carries `v`. Adding an optional field keeps the version; renaming or
removing one bumps it. Decoders refuse versions they do not know (the Literal does).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator


class RequestStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (RequestStatus.FINISHED, RequestStatus.CANCELLED, RequestStatus.FAILED)


class FinishReason(StrEnum):
    STOP = "stop"  # EOS token or a stop string
    LENGTH = "length"  # max_new_tokens or the model's context length
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"  # the request's own `timeout` ran out
    ERROR = "error"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SamplingParams(_Message):
    """How to sample one request; validated identically at the API and in the worker."""

    max_new_tokens: int = Field(default=64, ge=1, le=1_000_000)
    temperature: float = Field(default=1.0, ge=0.0, le=100.0)
    top_k: int = Field(default=0, ge=0, description="0 disables top-k")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    ignore_eos: bool = False  # keep generating past the EOS token (benchmarks, tests)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(default=0, ge=0, le=1_000_000)
    logprobs: int | None = Field(default=None, ge=0, le=20, description="top log-probabilities per token")
    stop: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=8
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class ChatMessage(_Message):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(_Message):
    """A prompt (or chat messages, rendered by the worker's chat template) to generate from, stored in
    the request hash; the Celery task carries only its id."""

    v: Literal[1] = 1
    request_id: str
    model: str
    prompt: str = ""
    messages: list[ChatMessage] | None = None
    params: SamplingParams
    created_at: float
    cancel_on_disconnect: bool = False  # cancel when a subscriber of its stream disconnects
    timeout_s: float | None = None  # generation ends with finish_reason "timeout" this long after created_at

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> GenerationRequest:
        if bool(self.prompt) == bool(self.messages):
            raise ValueError("exactly one of prompt and messages must be given")
        return self


class Usage(_Message):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RequestState(_Message):
    """The mutable part of a request's hash; every field but status is filled in as the request runs."""

    v: Literal[1] = 1
    status: RequestStatus = RequestStatus.QUEUED
    worker_id: str | None = None
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None
    largest_batch: int | None = None  # the most requests that shared a decode step with this one


class TopLogprob(_Message):
    token_id: int
    token: str
    logprob: float


class TokenLogprob(_Message):
    """One generated token with its log-probability and, when asked for, the most likely alternatives."""

    token_id: int
    token: str
    logprob: float
    top: list[TopLogprob] = Field(default_factory=list)


class TokenEvent(_Message):
    """New text of one request; `index` counts events from 0 and is the stream entry's id."""

    v: Literal[1] = 1
    type: Literal["token"] = "token"
    index: int = Field(ge=0)
    text: str
    token_ids: list[int] = Field(default_factory=list)  # the tokens this text completes (to resume from)
    logprobs: list[TokenLogprob] | None = None  # one per token id, when the request asked for them


class DoneEvent(_Message):
    """The last event of a request that ended normally (or was cancelled)."""

    v: Literal[1] = 1
    type: Literal["done"] = "done"
    index: int = Field(ge=0)
    finish_reason: FinishReason
    usage: Usage


class ErrorEvent(_Message):
    """The last event of a request that failed; `message` says why."""

    v: Literal[1] = 1
    type: Literal["error"] = "error"
    index: int = Field(ge=0)
    message: str


StreamEvent = Annotated[TokenEvent | DoneEvent | ErrorEvent, Field(discriminator="type")]
STREAM_EVENT = TypeAdapter(StreamEvent)


class WorkerInfo(_Message):
    """A worker's heartbeat: who it is, what it serves, and how busy it is."""

    v: Literal[1] = 1
    worker_id: str
    host: str
    pid: int
    model: str
    device: str
    dtype: str
    vocab_size: int
    eos_token_id: int | None
    max_batch: int
    max_model_len: int
    slots_used: int
    slots_free: int
    num_steps: int
    largest_batch: int
    tokens_generated: int
    started_at: float
    updated_at: float
    mean_request_s: float | None = None  # recent average time a request spends in the engine
    hostname: str = ""  # the Celery node name: where remote-control commands go
    tokens_per_s: float = 0.0  # tokens generated per second over the last heartbeat interval
    last_request_at: float = 0.0  # when this worker last took a request (0: never); picks who switches
    state: Literal["ready", "loading", "idle"] = "ready"  # idle: no model loaded


class ModelLoadState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


LOAD_REQUESTED = "requested"  # ModelState.stage of a load the API asked for that its worker has not begun
UNLOAD_REQUESTED = "unload requested"  # ModelState.stage of an unload the API asked for
# A recorded load or unload request counts this long: the API shows such a load as under way, and a
# worker whose remote-control command was lost still acts on it; an older one is abandoned.
REQUEST_FRESH_S = 30.0


class ModelState(_Message):
    """One worker's progress with one model; also the payload of /v1/models/events."""

    v: Literal[1] = 1
    model: str
    worker_id: str
    state: ModelLoadState
    stage: str = ""  # what the worker is doing now, in words
    progress: float = Field(default=0.0, ge=0.0, le=100.0)  # percent of the whole load
    bytes_downloaded: int = 0
    bytes_total: int | None = None
    reason: str | None = None  # why it failed
    updated_at: float
