"""Will a model fit? Parameters times dtype bytes plus the KV-cache budget, against free device memory.

Parameter counts come from the safetensors headers (local files) or the Hub's safetensors
metadata, so nothing is loaded to find out.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.model_names import check_model_name, local_model_dir
from shared.settings import BUILTIN_MODELS, Settings
from workers.model_loader import pick_device, pick_dtype, resolve_model_path

GIB = 1024**3


@dataclass(frozen=True)
class ModelFacts:
    name: str
    num_params: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    max_positions: int


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


def _facts_from_config(name: str, config: dict, num_params: int) -> ModelFacts:
    heads = config.get("num_attention_heads", 1)
    return ModelFacts(
        name=name,
        num_params=num_params,
        num_layers=config.get("num_hidden_layers", 0),
        num_kv_heads=config.get("num_key_value_heads") or heads,
        head_dim=config.get("head_dim") or config.get("hidden_size", 0) // max(1, heads),
        max_positions=config.get("max_position_embeddings", 2048),
    )


def describe_model(name: str, settings: Settings) -> ModelFacts:
    """Size facts of a model before loading it; ValueError for a name that is unsafe or missing."""
    check_model_name(name, settings)
    if name in BUILTIN_MODELS or local_model_dir(name, settings) is not None:
        path = resolve_model_path(name, settings)  # builds a built-in model; checks the directory
        config = json.loads((path / "config.json").read_text())
        return _facts_from_config(name, config, _safetensors_params(path))
    from huggingface_hub import get_safetensors_metadata, hf_hub_download

    try:
        config = json.loads(
            Path(hf_hub_download(name, "config.json", cache_dir=settings.cache_dir / "hub")).read_text()
        )
        params = sum(get_safetensors_metadata(name).parameter_count.values())
    except Exception as exc:
        raise ValueError(f"could not read {name!r} from the Hub: {exc}") from exc
    return _facts_from_config(name, config, params)


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
    """ValueError with the figures when weights plus KV cache exceed the free memory (plus what the
    current model frees when it unloads)."""
    device = pick_device(settings.device)
    dtype_bytes = torch.tensor([], dtype=pick_dtype(settings.dtype, device)).element_size()
    context = min(facts.max_positions, settings.max_model_len or 2048)
    weights = facts.num_params * dtype_bytes
    kv = (
        2
        * facts.num_layers
        * facts.num_kv_heads
        * facts.head_dim
        * context
        * settings.max_batch
        * dtype_bytes
    )
    available = free_memory(device) + freed_bytes
    if weights + kv > available:
        raise ValueError(
            f"model {facts.name!r} needs {(weights + kv) / GIB:.2f} GiB "
            f"(weights {weights / GIB:.2f} GiB for {facts.num_params / 1e9:.2f}B parameters + KV cache "
            f"{kv / GIB:.2f} GiB for {settings.max_batch} x {context} tokens) but {device.type} has "
            f"{available / GIB:.2f} GiB free"
        )
