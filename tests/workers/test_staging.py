"""`torchweave stage`, offline: a Hub model laid out in CACHE_DIR/hub as huggingface_hub stores it (blobs
named by their SHA-256, snapshot links, refs/main) is checked, written as safetensors in the serving dtype,
and loaded by the worker's loader with the Hub cache gone; pickles and damaged downloads are refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from shared.settings import PROJECT_ROOT, Settings
from tests.workers.hub_server import serve_repo
from workers.builtin_model import ensure_builtin_model
from workers.model_fit import describe_model
from workers.model_loader import load_model
from workers.staging import STAGE_RECORD, stage
from workers.staging import main as staging_main
from workers.weight_files import WeightsError

HUB_ID = "testorg/staged-tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model's files (the second built-in model, fp32 safetensors) to publish as a Hub repo."""
    return ensure_builtin_model(tmp_path_factory.mktemp("source"), "torchweave-tiny2")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No request may leave for the Hub (HF_HUB_OFFLINE=1, as huggingface_hub read it at import)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield


def lay_out_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """CACHE_DIR/hub as a download leaves it: large files in blobs/ named by SHA-256 (small ones by a git
    SHA-1), linked from snapshots/<commit>/, and refs/main naming the commit. Returns the blobs folder."""
    repo = cache_dir / "hub" / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshot = repo / "blobs", repo / "snapshots" / COMMIT
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        large = name.endswith((".safetensors", ".bin"))
        blob = hashlib.sha256(data) if large else hashlib.sha1(b"blob %d\0" % len(data) + data)
        (blobs / blob.hexdigest()).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.hexdigest()))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return blobs


def repo_files(source: Path, pickled: bool = False) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.suffix != ".safetensors"}
    if pickled:  # the same weights as a pickled state dict, as older repos publish them
        out = io.BytesIO()
        torch.save(load_file(source / "model.safetensors"), out)
        files["pytorch_model.bin"] = out.getvalue()
    else:
        files["model.safetensors"] = (source / "model.safetensors").read_bytes()
    return files


def settings(cache_dir: Path, dtype: str = "bf16", allow_pickle: bool = False) -> Settings:
    return Settings(cache_dir=cache_dir, device="cpu", dtype=dtype, allow_pickle=allow_pickle)


def test_a_staged_model_is_safetensors_in_the_serving_dtype_and_loads_without_the_hub_cache(
    source: Path, tmp_path: Path
) -> None:
    lay_out_hub_cache(tmp_path, HUB_ID, repo_files(source))
    lines: list[str] = []
    staged = stage(HUB_ID, settings(tmp_path), torch.bfloat16, lines.append)

    assert staged == tmp_path / "staged" / "testorg--staged-tiny" / "bfloat16"
    assert any("SHA-256" in line for line in lines) and any("converting" in line for line in lines), lines
    original = load_file(source / "model.safetensors")
    with safe_open(staged / "model.safetensors", "pt") as f:
        assert set(f.keys()) == set(original)
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())  # noqa: SIM118
    assert json.loads((staged / "config.json").read_text())["dtype"] == "bfloat16"
    assert (staged / "tokenizer.json").is_file()
    assert json.loads((staged / STAGE_RECORD).read_text())["revision"] == COMMIT

    # The worker loads the staged copy with no Hub cache left at all (and HF_HUB_OFFLINE=1).
    shutil.rmtree(tmp_path / "hub")
    loaded = load_model(HUB_ID, settings(tmp_path))
    assert loaded.dtype == torch.bfloat16
    state = loaded.model.state_dict()
    for key, tensor in original.items():
        assert torch.equal(state[key], tensor.to(torch.bfloat16)), key
    assert describe_model(HUB_ID, settings(tmp_path)).num_params == sum(t.numel() for t in original.values())
    # Staging again finds it done; a worker serving another dtype does not take the bf16 copy.
    assert stage(HUB_ID, settings(tmp_path), torch.bfloat16, lines.append) == staged
    with pytest.raises(OSError):
        load_model(HUB_ID, settings(tmp_path, dtype="fp16"))


def test_pickled_weights_are_refused_unless_allow_pickle_and_then_leave_as_safetensors(
    source: Path, tmp_path: Path
) -> None:
    lay_out_hub_cache(tmp_path, HUB_ID, repo_files(source, pickled=True))
    with pytest.raises(WeightsError, match=r"pytorch_model\.bin.*ALLOW_PICKLE=1"):
        stage(HUB_ID, settings(tmp_path), torch.float32, print)
    assert not (tmp_path / "staged" / "testorg--staged-tiny" / "float32").exists()

    staged = stage(HUB_ID, settings(tmp_path, dtype="fp32", allow_pickle=True), torch.float32, print)
    assert sorted(p.name for p in staged.glob("*.safetensors")) == ["model.safetensors"]
    assert not list(staged.glob("*.bin"))
    converted, original = load_file(staged / "model.safetensors"), load_file(source / "model.safetensors")
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[k], original[k]) for k in original)


def test_a_damaged_download_is_refused_and_nothing_is_staged(source: Path, tmp_path: Path) -> None:
    blobs = lay_out_hub_cache(tmp_path, HUB_ID, repo_files(source))
    weights = blobs / hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor: same size, different SHA-256
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"model\.safetensors does not match its SHA-256"):
        stage(HUB_ID, settings(tmp_path), torch.bfloat16, print)

    # A file that is no blob link (copied by hand) and cut short: safetensors' own header check.
    snapshot = tmp_path / "hub" / "models--testorg--staged-tiny" / "snapshots" / COMMIT
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes()[:-64])
    with pytest.raises(WeightsError, match=r"model\.safetensors is not whole safetensors"):
        stage(HUB_ID, settings(tmp_path), torch.bfloat16, print)
    assert not list((tmp_path / "staged" / "testorg--staged-tiny").iterdir())  # no half-written copy


def test_the_cli_downloads_with_progress_resumes_a_dropped_connection_and_stages(
    source: Path, tmp_path: Path
) -> None:
    """`torchweave stage` in its own process against a Hub on loopback that drops the weights' first GET
    past huggingface_hub's 10 MiB read: the download goes on from there with a Range request."""
    files = repo_files(source)
    padded = {**load_file(source / "model.safetensors"), "pad": torch.zeros(4_000_000)}  # 16 MB of weights
    padded_file = tmp_path / "padded.safetensors"
    save_file(padded, padded_file)
    files["model.safetensors"] = padded_file.read_bytes()
    cut_at = 12 * 1024 * 1024
    with serve_repo("testorg/remote", files, cut_at) as (endpoint, ranges):
        env = {**os.environ, "CACHE_DIR": str(tmp_path), "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1",
               "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "0"}  # fmt: skip
        env.pop("DTYPE", None)
        run = [sys.executable, "-m", "api.cli", "stage", "testorg/remote", "--dtype", "fp16"]
        out = subprocess.run(run, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    staged = tmp_path / "staged" / "testorg--remote" / "float16"
    assert out.stdout.strip() == str(staged)
    # Resumed past what had arrived (whole 10 MiB reads), not started again.
    assert ranges == [f"bytes={10 * 1024 * 1024}-"], ranges
    assert "downloading (" in out.stderr and "MB)" in out.stderr  # progress, in bytes
    assert "checking model.safetensors" in out.stderr  # the SHA-256 its blob is named by
    assert "converting model.safetensors (1/1) to float16" in out.stderr
    converted = load_file(staged / "model.safetensors")
    assert all(torch.equal(converted[k], t.to(torch.float16)) for k, t in padded.items())


def test_a_local_directory_is_left_as_it_is_and_an_unsafe_name_is_one_clear_line(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = Settings(cache_dir=tmp_path, model_dir=source.parent, device="cpu", dtype="fp32")
    assert stage("./torchweave-tiny2", local, torch.float32, print) == source.resolve()
    assert not (tmp_path / "staged").exists()
    assert staging_main(["../escape"]) == 1
    assert capsys.readouterr().err.endswith("torchweave stage: model path '../escape' is outside MODEL_DIR\n")
