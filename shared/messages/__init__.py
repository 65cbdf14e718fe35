"""The messages that cross Redis, as versioned pydantic models.

Each message carries `v`. Adding an optional field keeps the version; renaming or
removing one bumps it. Decoders refuse versions they do not know (the Literal does).
"""

from shared.messages.access import ApiKey, BrowserSession, RateCharge, Role
from shared.messages.events import (
    STREAM_EVENT,
    DoneEvent,
    ErrorEvent,
    PromptTokenLogprob,
    StreamEvent,
    TokenEvent,
    TokenLogprob,
    TopLogprob,
)
from shared.messages.fleet import (
    LOAD_PENDING,
    PENDING_FRESH_S,
    UNLOAD_PENDING,
    ModelLoadState,
    ModelState,
    WorkerInfo,
)
from shared.messages.generation import (
    ChatMessage,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    SamplingParams,
    Usage,
)

__all__ = [
    "LOAD_PENDING",
    "PENDING_FRESH_S",
    "STREAM_EVENT",
    "UNLOAD_PENDING",
    "ApiKey",
    "BrowserSession",
    "ChatMessage",
    "DoneEvent",
    "ErrorEvent",
    "FinishReason",
    "GenerationRequest",
    "ModelLoadState",
    "ModelState",
    "PromptTokenLogprob",
    "RateCharge",
    "RequestState",
    "RequestStatus",
    "Role",
    "SamplingParams",
    "StreamEvent",
    "TokenEvent",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "WorkerInfo",
]
