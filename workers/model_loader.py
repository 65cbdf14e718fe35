"""Resolve a model name (built-in, a directory under MODEL_DIR, or a Hub id) and load it with transformers.

A Hub id loads from its staged copy when `torchweave stage` left one in the serving dtype
(CACHE_DIR/staged, workers/staging.py), without asking the Hub; else from CACHE_DIR/hub, downloading first.

Safety: weights load from safetensors only unless ALLOW_PICKLE=1, and trust_remote_code is on
only for models listed in TRUSTED_MODELS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from shared.model_names import check_model_name, local_model_dir
from shared.settings import BUILTIN_MODELS, Settings
from workers.builtin_model import ensure_builtin_model

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# Files a causal LM needs from the Hub; pickled weights only when ALLOW_PICKLE=1.
HUB_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja"]

DEFAULT_CONTEXT = 2048  # for a config that names no context length
# (stage, percent, bytes done, bytes total)
Progress = Callable[[str, float, int, int | None], None]


@dataclass
class LoadedModel:
    name: str
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype


def context_length(config: Any, settings: Settings) -> int:
    """The context a model is served with: its own, or MAX_MODEL_LEN when that is set and shorter. The
    paged KV cache holds only the tokens requests really have, so a long context costs nothing unused."""
    own = int(getattr(config, "max_position_embeddings", DEFAULT_CONTEXT) or DEFAULT_CONTEXT)
    return min(own, settings.max_model_len) if settings.max_model_len else own


def pick_device(requested: str) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested:
        if requested not in DTYPES:
            raise ValueError(f"DTYPE {requested!r} is not one of {sorted(DTYPES)}")
        return DTYPES[requested]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """The canonical name of a dtype: float32, bfloat16, float16."""
    return str(dtype).removeprefix("torch.")


def staged_dir(name: str, settings: Settings, dtype: torch.dtype) -> Path:
    """Where `torchweave stage` writes a Hub model in one dtype: CACHE_DIR/staged/owner--name/bfloat16."""
    return settings.cache_dir / "staged" / name.replace("/", "--") / dtype_name(dtype)


def staged_copy(name: str, settings: Settings) -> Path | None:
    """The staged copy of a Hub model in the dtype this worker serves, or None. It appears whole or not at
    all (staging renames a finished directory into place)."""
    path = staged_dir(name, settings, pick_dtype(settings.dtype, pick_device(settings.device)))
    return path if (path / "config.json").is_file() else None


def _no_progress(stage: str, percent: float, done: int = 0, total: int | None = None) -> None:
    pass


def resolve_model_path(name: str, settings: Settings, progress: Progress = _no_progress) -> Path:
    """The local directory from_pretrained reads: built or downloaded first when needed.

    Raises ValueError (with the reason) for a name that is unsafe, a directory that is missing
    or has no safetensors weights (unless ALLOW_PICKLE=1).
    """
    if name == settings.model and Path(name).expanduser().is_dir():
        path = Path(name).expanduser()  # MODEL is the operator's own choice: any directory will do
    else:
        check_model_name(name, settings)  # a name that came through the API
        path = _fetch(name, settings, progress)
    if not path.is_dir():
        raise ValueError(f"model directory {name!r} does not exist")
    if not (path / "config.json").is_file():
        raise ValueError(f"model directory {name!r} has no config.json")
    if not any(path.glob("*.safetensors")) and not settings.allow_pickle:
        raise ValueError(f"model {name!r} has no safetensors weights; pickled weights need ALLOW_PICKLE=1")
    return path


def _fetch(name: str, settings: Settings, progress: Progress) -> Path:
    if name in BUILTIN_MODELS:
        progress("building the built-in model", 5.0, 0, None)
        return ensure_builtin_model(settings.cache_dir, name)
    path = local_model_dir(name, settings)
    if path is not None:
        return path
    staged = staged_copy(name, settings)
    if staged is not None:  # no Hub request at all: the staged copy was checked when it was written
        progress("reading the staged copy", 5.0, 0, None)
        return staged
    return download(name, settings, progress)


def cached_snapshot(repo_id: str, settings: Settings) -> Path | None:
    """A Hub model's files already in CACHE_DIR/hub (what download() leaves there), or None."""
    from huggingface_hub import snapshot_download

    patterns = HUB_FILES + (["*.bin", "*.pt"] if settings.allow_pickle else [])
    try:
        local = snapshot_download(
            repo_id, cache_dir=settings.cache_dir / "hub", allow_patterns=patterns, local_files_only=True
        )
    except Exception:  # not cached (huggingface_hub raises its own "not found locally" errors)
        return None
    return Path(local)


def download(repo_id: str, settings: Settings, progress: Progress) -> Path:
    """Fetch a Hub model's files into CACHE_DIR, reporting bytes as they arrive (0 to 60 percent)."""
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class ReportingBar(tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.unit == "B" and self.total:
                progress("downloading", 60.0 * self.n / self.total, int(self.n), int(self.total))
            return shown

    patterns = HUB_FILES + (["*.bin", "*.pt"] if settings.allow_pickle else [])
    progress("downloading", 0.0, 0, None)
    local = snapshot_download(
        repo_id, cache_dir=settings.cache_dir / "hub", allow_patterns=patterns, tqdm_class=ReportingBar
    )
    return Path(local)


def load_model(name: str, settings: Settings, progress: Progress = _no_progress) -> LoadedModel:
    """Load a causal LM and its tokenizer onto the configured device, in eval mode."""
    path = resolve_model_path(name, settings, progress)
    dev = pick_device(settings.device)
    dt = pick_dtype(settings.dtype, dev)
    trusted = name in settings.trusted_models
    progress("loading weights", 60.0, 0, None)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trusted)
    model: Any = AutoModelForCausalLM.from_pretrained(
        path, dtype=dt, use_safetensors=None if settings.allow_pickle else True, trust_remote_code=trusted
    )
    progress("moving weights to the device", 85.0, 0, None)
    model = model.to(dev).eval()
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=dev, dtype=dt)
