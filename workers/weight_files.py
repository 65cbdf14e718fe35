"""A model directory's weight files: which they are, whether they arrived whole, and a copy of them as
safetensors in another dtype. Knows nothing of the Hub's API, model names or settings.

Pickled weights (.bin, .pt, .pth) run code when unpickled; they are read here only when the caller allows
it, and then with `torch.load(weights_only=True)`, and they leave as safetensors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
# Pickles a training run leaves beside the weights: never weights, never read.
NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "rng_state")
SAFETENSORS_INDEX = "model.safetensors.index.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Report = Callable[[str], None]  # one line of progress


class WeightsError(ValueError):
    """The weights are missing, damaged or pickled without permission; the message says which file."""


def find_weights(path: Path) -> tuple[list[Path], bool]:
    """(weight files, whether they are pickles): the safetensors files when there are any, else the
    pickled ones. Either list may be empty."""
    safetensors = sorted(path.glob("*.safetensors"))
    if safetensors:
        return safetensors, False
    pickles = sorted(
        p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES and not p.name.startswith(NOT_WEIGHTS)
    )
    return pickles, True


def verify_blobs(files: list[Path], report: Report) -> None:
    """Check each file that is a link into a Hugging Face cache's blobs/ against the SHA-256 the blob is
    named by (the Hub names large files' blobs so): a download cut short or altered is caught here."""
    for file in files:
        blob = file.resolve()
        if not (file.is_symlink() and blob.parent.name == "blobs" and _SHA256.match(blob.name)):
            continue
        report(f"checking {file.name} ({blob.stat().st_size / 1e6:.1f} MB) against its SHA-256")
        digest = hashlib.sha256()
        with open(blob, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != blob.name:
            raise WeightsError(f"{file.name} does not match its SHA-256 (a damaged download): delete {blob}")


def _read(file: Path, is_pickle: bool) -> dict[str, torch.Tensor]:
    if is_pickle:
        try:  # mmap keeps a large shard out of memory; the legacy (non-zip) format cannot be mapped
            return dict(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
        except RuntimeError:
            return dict(torch.load(file, map_location="cpu", weights_only=True))
    try:
        with safe_open(file, "pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except SafetensorError as exc:
        raise WeightsError(f"{file.name} is not whole safetensors ({exc})") from exc


def _safetensors_name(file: Path) -> str:
    """pytorch_model-00001-of-00002.bin -> model-00001-of-00002.safetensors; a safetensors name stays."""
    stem = file.stem.replace("pytorch_model", "model", 1)
    return f"{stem}.safetensors"


def convert(files: list[Path], is_pickle: bool, out_dir: Path, dtype: torch.dtype, report: Report) -> None:
    """Write every tensor of `files` into out_dir as safetensors, floating-point ones cast to `dtype`,
    one output file per input file, plus model.safetensors.index.json when there are several. Raises
    WeightsError when a file is damaged or an index names tensors the files do not hold."""
    weight_map: dict[str, str] = {}
    total_bytes = 0
    for i, file in enumerate(files, 1):
        report(f"converting {file.name} ({i}/{len(files)}) to {str(dtype).removeprefix('torch.')}")
        tensors = {
            # copy=True: tied pickled tensors share storage, which safetensors refuses to write
            key: (t.to(dtype=dtype, copy=True) if t.is_floating_point() else t.clone()).contiguous()
            for key, t in _read(file, is_pickle).items()
        }
        name = _safetensors_name(file)
        save_file(tensors, out_dir / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
    index = "pytorch_model.bin.index.json" if is_pickle else SAFETENSORS_INDEX
    _check_index(files[0].parent / index, weight_map)
    if len(files) > 1:
        written = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / SAFETENSORS_INDEX).write_text(json.dumps(written, indent=2) + "\n")


def _check_index(index: Path, weight_map: dict[str, str]) -> None:
    """The source's own index, when it has one, must name exactly the tensors its shards hold."""
    if not index.is_file():
        return
    named = set(json.loads(index.read_text()).get("weight_map", {}))
    if named != set(weight_map):
        odd = sorted(named ^ set(weight_map))[:3]
        raise WeightsError(f"{index.name} and the shards disagree on tensors (e.g. {odd}): a shard is short")
