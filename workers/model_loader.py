"""Resolve a MODEL name (the built-in name, a local directory, or a Hub id) and load it with transformers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from shared.settings import BUILTIN_MODEL
from workers.builtin_model import ensure_builtin_model

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class LoadedModel:
    name: str
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype


def resolve_model_path(name: str, cache_dir: Path) -> str:
    """Where from_pretrained should look: the built-in model's directory, or the name unchanged."""
    if name == BUILTIN_MODEL:
        return str(ensure_builtin_model(cache_dir))
    return name


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


def load_model(name: str, cache_dir: Path, device: str = "", dtype: str = "") -> LoadedModel:
    """Load a causal LM and its tokenizer onto the chosen device, in eval mode."""
    path = resolve_model_path(name, cache_dir)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dt)
    model = model.to(dev).eval()
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, device=dev, dtype=dt)
