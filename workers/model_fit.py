"""Will a model fit? Parameters times dtype bytes plus the KV-cache budget, against free device memory.

Parameter counts come from the safetensors headers (local files) or the Hub's safetensors
metadata, so nothing is loaded to find out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig

from shared.model_names import check_model_name, local_model_dir
from shared.settings import BUILTIN_MODELS, Settings
from workers.engine import cache_shape
from workers.model_loader import (
    cached_snapshot,
    context_length,
    pick_device,
    pick_dtype,
    resolve_model_path,
    staged_copy,
)

GIB = 1024**3


@dataclass(frozen=True)
class ModelFacts:
    name: str
    num_params: int
    config: Any  # the model's transformers config: its shape and context length


def _safetensors_params(path: Path) -> int:
    """Parameters in the safetensors files of a directory, read from their JSON headers only."""
    total = 0
    for file in sorted(path.glob("*.safetensors")):
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for key, meta in header.items():
            if key != "__metadata__":
                n = 1
                for dim in meta["shape"]:
                    n *= dim
                total += n
    return total


def describe_model(name: str, settings: Settings) -> ModelFacts:
    """Size facts of a model before loading it; ValueError for a name that is unsafe or missing."""
    check_model_name(name, settings)
    if name in BUILTIN_MODELS or local_model_dir(name, settings) is not None:
        path = resolve_model_path(name, settings)  # builds a built-in model; checks the directory
        return ModelFacts(name, _safetensors_params(path), AutoConfig.from_pretrained(path))
    cached = staged_copy(name, settings) or cached_snapshot(name, settings)
    if cached is not None:  # staged, or already in CACHE_DIR/hub: no network needed (HF_HUB_OFFLINE works)
        return ModelFacts(name, _safetensors_params(cached), AutoConfig.from_pretrained(cached))
    from huggingface_hub import get_safetensors_metadata, hf_hub_download

    try:
        config_file = hf_hub_download(name, "config.json", cache_dir=settings.cache_dir / "hub")
        params = sum(get_safetensors_metadata(name).parameter_count.values())
        return ModelFacts(name, params, AutoConfig.from_pretrained(Path(config_file).parent))
    except Exception as exc:
        raise ValueError(f"could not read {name!r} from the Hub: {exc}") from exc


def free_memory(device: torch.device) -> int:
    """Bytes free on the device: CUDA's own count, or MemAvailable for the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def check_fit(facts: ModelFacts, settings: Settings, freed_bytes: int = 0) -> None:
    """ValueError with the figures when the weights plus a KV cache that holds one request of the whole
    context exceed the free memory (plus what the current model frees when it unloads)."""
    device = pick_device(settings.device)
    dtype_bytes = torch.tensor([], dtype=pick_dtype(settings.dtype, device)).element_size()
    context = context_length(facts.config, settings)
    layers, kv_heads, head_dim = cache_shape(facts.config)
    weights = facts.num_params * dtype_bytes
    kv = 2 * layers * kv_heads * head_dim * context * dtype_bytes
    available = free_memory(device) + freed_bytes
    if weights + kv > available:
        raise ValueError(
            f"model {facts.name!r} needs {(weights + kv) / GIB:.2f} GiB "
            f"(weights {weights / GIB:.2f} GiB for {facts.num_params / 1e9:.2f}B parameters + KV cache "
            f"{kv / GIB:.2f} GiB for one request of {context} tokens) but {device.type} has "
            f"{available / GIB:.2f} GiB free"
        )
