"""`torchweave stage MODEL` (this module runs it): fetch a Hub model once into CACHE_DIR, check it, and write
it as safetensors in the serving dtype under CACHE_DIR/staged, where every worker sharing that storage loads
it without asking the Hub (workers/model_loader.py looks there first).

The download is huggingface_hub's snapshot_download into CACHE_DIR/hub. A dropped connection resumes
where it stopped (a Range request); after a killed run, the files that arrived stay and the rest are
fetched again (huggingface_hub 2.x writes each file to a temporary file of its own process). The staged
copy is written in a temporary directory and renamed into place, so a reader sees it whole or not at all,
and pods that stage at once do no harm.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from shared.model_names import check_model_name, local_model_dir
from shared.settings import BUILTIN_MODELS, Settings, get_settings
from workers.builtin_model import ensure_builtin_model
from workers.model_loader import (
    DTYPES,
    HUB_FILES,
    Progress,
    download,
    dtype_name,
    pick_device,
    pick_dtype,
    staged_dir,
)
from workers.weight_files import Report, WeightsError, convert, find_weights, verify_blobs

STAGE_RECORD = "torchweave-stage.json"  # what was staged from where, written last


def stage(name: str, settings: Settings, dtype: torch.dtype, report: Report) -> Path:
    """The directory workers load `name` from, staged now unless it already is (a built-in model is built; a
    local directory is left as it is). Raises ValueError saying why for an unsafe name, pickled weights
    without ALLOW_PICKLE=1, or a damaged download."""
    if name == settings.model and Path(name).expanduser().is_dir():
        report(f"{name} is a directory, which workers read as it is: nothing to stage")
        return Path(name).expanduser()  # MODEL is the operator's own choice, as in the loader
    check_model_name(name, settings)
    if name in BUILTIN_MODELS:  # built here from a seed: nothing to fetch
        return ensure_builtin_model(settings.cache_dir, name)
    if (local := local_model_dir(name, settings)) is not None:
        report(f"{name} is under MODEL_DIR, which workers read as it is: nothing to stage")
        return local
    target = staged_dir(name, settings, dtype)
    if (target / STAGE_RECORD).is_file():
        report(f"{name} is already staged in {dtype_name(dtype)}")
        return target
    source = download(name, settings, _printer(report))
    files, is_pickle = find_weights(source)
    if not files:
        raise WeightsError(f"{name} has no weights (.safetensors, or .bin/.pt with ALLOW_PICKLE=1)")
    if is_pickle and not settings.allow_pickle:
        names = ", ".join(f.name for f in files[:3])
        raise WeightsError(f"{name} has only pickled weights ({names}), which run code when loaded: refused; "
                           "set ALLOW_PICKLE=1 to convert them to safetensors")  # fmt: skip
    if not (source / "config.json").is_file():
        raise WeightsError(f"{name} has no config.json")
    verify_blobs(files, report)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".stage-", dir=target.parent))
    try:
        convert(files, is_pickle, work, dtype, report)
        _copy_other_files(source, work, dtype)
        record = {"model": name, "dtype": dtype_name(dtype), "revision": source.name, "at": time.time()}
        (work / STAGE_RECORD).write_text(json.dumps(record) + "\n")
        try:
            os.rename(work, target)
        except OSError:
            if not (target / STAGE_RECORD).is_file():  # another pod won only if it finished
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _copy_other_files(source: Path, out: Path, dtype: torch.dtype) -> None:
    """Config, tokenizer and templates beside the weights; config.json records the new dtype."""
    for file in sorted(source.iterdir()):
        wanted = any(fnmatch.fnmatch(file.name, p) for p in HUB_FILES)
        if wanted and file.suffix != ".safetensors" and not file.name.endswith(".index.json"):
            shutil.copyfile(file, out / file.name)
    config = json.loads((out / "config.json").read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config or key == "dtype":
            config[key] = dtype_name(dtype)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def _printer(report: Report) -> Progress:
    """A download progress callback that reports each 10 percent once."""
    shown = {-1}

    def progress(stage: str, percent: float, done: int = 0, total: int | None = None) -> None:
        step = int(percent / 60 * 10)  # download() reports 0 to 60 percent
        if step not in shown:
            shown.add(step)
            size = f" ({done / 1e6:.0f} of {total / 1e6:.0f} MB)" if total else ""
            report(f"{stage}{size}")

    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torchweave stage", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a Hub id (owner/name) or a built-in model")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: DTYPE, else what DEVICE serves in")
    args = parser.parse_args(argv)
    settings = get_settings()
    dtype = pick_dtype(args.dtype or settings.dtype, pick_device(settings.device))
    try:
        path = stage(args.model, settings, dtype, lambda line: print(line, file=sys.stderr, flush=True))
    except (ValueError, OSError) as exc:  # OSError: huggingface_hub's (not found, offline, HTTP)
        print(f"torchweave stage: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
