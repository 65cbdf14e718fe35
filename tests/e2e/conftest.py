"""The ground truth for end-to-end tests: the built-in model run alone with HF `generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="session")
def reference(cache_dir: Path) -> Any:
    """The built-in model and tokenizer, loaded in the test process."""
    path = cache_dir / "models" / "torchweave-tiny"
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def greedy_text(reference: Any, prompt: str, max_new_tokens: int, ignore_eos: bool = False) -> str:
    """model.generate on the prompt alone, greedy; with ignore_eos it runs past EOS as requests can ask."""
    tokenizer, model = reference
    ids = torch.tensor([tokenizer.encode(prompt)])
    # An explicit eos_token_id=None overrides the model's own EOS.
    eos: dict[str, Any] = {"eos_token_id": None} if ignore_eos else {}
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        **eos,
    )
    text: str = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    return text
