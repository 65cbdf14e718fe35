"""The inference engine: continuous batching over a slot-based KV cache.

It knows nothing of Celery, Redis or text: token ids in, token ids out.
"""

from workers.engine.engine import LLMEngine, StepOutput
from workers.engine.model_runner import cache_shape
from workers.engine.sequence import SamplingOptions, Sequence, SequenceStatus, TokenConstraint

__all__ = [
    "LLMEngine",
    "SamplingOptions",
    "Sequence",
    "SequenceStatus",
    "StepOutput",
    "TokenConstraint",
    "cache_shape",
]
