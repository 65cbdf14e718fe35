"""KV_CACHE_MEMORY: bytes with units, a fraction of free memory, or auto; and the blocks that fit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from workers.kv_budget import GIB, budget_bytes, num_blocks

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# 2 layers x (key + value) x 2 heads x 16 dims x 4 bytes = 512 bytes a token; 8 KiB a block of 16.
CONFIG = SimpleNamespace(num_attention_heads=4, num_key_value_heads=2, hidden_size=64, num_hidden_layers=2)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("4GiB", 4 * GIB), ("500MB", 500 * 1000**2), ("1024", 1024), ("0.5", 50 * GIB), (" 2 gib ", 2 * GIB)],
)
def test_a_budget_is_bytes_with_units_or_a_fraction_of_free_memory(setting: str, expected: int) -> None:
    assert budget_bytes(setting, 100 * GIB, CPU) == expected


def test_auto_takes_most_of_a_gpu_and_a_capped_share_of_the_cpu() -> None:
    assert budget_bytes("auto", 100 * GIB, CUDA) == int(0.85 * 100 * GIB)
    assert budget_bytes("auto", 8 * GIB, CPU) == 2 * GIB
    assert budget_bytes("auto", 100 * GIB, CPU) == 4 * GIB


@pytest.mark.parametrize("setting", ["lots", "4 parsecs", "-1GiB", ""])
def test_a_bad_budget_names_the_setting(setting: str) -> None:
    with pytest.raises(ValueError, match="KV_CACHE_MEMORY"):
        budget_bytes(setting, GIB, CPU)


def test_blocks_fit_the_budget_and_auto_on_cpu_stops_at_what_requests_can_use() -> None:
    assert num_blocks("1MiB", CONFIG, torch.float32, GIB, CPU, 16, most_tokens=10**9) == 128
    # auto on CPU: no more than 8 requests of 2048 tokens can hold, 1024 blocks, not 4 GiB's worth.
    assert num_blocks("auto", CONFIG, torch.float32, 64 * GIB, CPU, 16, most_tokens=8 * 2048) == 1024
    assert num_blocks("1", CONFIG, torch.float32, 10, CPU, 16, most_tokens=1) == 1  # at least one block
