"""Count a prompt's tokens in the API process, with the `tokenizers` library alone (no torch).

The tokenizer file is found where a worker would load it from: the built-in model's cache
directory, a local model directory, or the Hugging Face cache (never the network). When
none is there, the check is left to the worker, which refuses a prompt that cannot fit.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from shared.model_names import local_model_dir
from shared.settings import BUILTIN_MODELS, Settings


@lru_cache(maxsize=16)
def _load(path: str) -> Tokenizer:
    return Tokenizer.from_file(path)


def tokenizer_file(model: str, settings: Settings) -> Path | None:
    if model in BUILTIN_MODELS:
        candidate = settings.cache_dir / "models" / model / "tokenizer.json"
        return candidate if candidate.is_file() else None
    local = local_model_dir(model, settings)
    if local is not None or (model == settings.model and Path(model).is_dir()):
        candidate = (local or Path(model)) / "tokenizer.json"
        return candidate if candidate.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "tokenizer.json")
    except Exception:  # an id the Hub cache does not accept: leave the check to the worker
        return None
    return Path(cached) if isinstance(cached, str) else None


def count_prompt_tokens(model: str, prompt: str, settings: Settings) -> int | None:
    """Tokens the worker will prefill for this prompt (special tokens included); None if unknown here."""
    path = tokenizer_file(model, settings)
    if path is None:
        return None
    return len(_load(str(path)).encode(prompt).ids)
