"""lm-evaluation-harness's `local-completions` model on the tiny local multiple-choice task shipped in
examples/lm_eval (a jsonl and a task YAML, no Hub): its loglikelihoods, read from echoed prompt logprobs,
equal a direct forward pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from shared.settings import PROJECT_ROOT
from tests.e2e.clients.conftest import MODEL

TASK = "torchweave_tiny_mc"
TASK_DIR = PROJECT_ROOT / "examples" / "lm_eval"  # shipped: the README's lm_eval command runs it
DOCS: list[dict[str, Any]] = [
    json.loads(line) for line in (TASK_DIR / f"{TASK}.jsonl").read_text().splitlines() if line
]


def direct_loglikelihood(reference: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) from one forward pass, tokenized as lm-eval does (no special tokens)."""
    tokenizer, model = reference
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
    return sum(logprobs[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_lm_eval_loglikelihoods_match_a_direct_forward_pass(
    live_url: str, model_dir: Path, reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval import simple_evaluate  # after the offline environment is set: datasets reads it at import
    from lm_eval.tasks import TaskManager

    monkeypatch.chdir(PROJECT_ROOT)  # the task names its data relative to the repository root, as printed
    model_args = (
        f"model={MODEL},base_url={live_url}/v1/completions,tokenizer={model_dir},"
        "tokenizer_backend=huggingface,tokenized_requests=True,num_concurrent=1,max_retries=1"
    )
    results = simple_evaluate(
        model="local-completions",
        model_args=model_args,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(TASK_DIR)),
        log_samples=True,
    )
    assert results is not None
    samples = results["samples"][TASK]
    assert len(samples) == len(DOCS)
    checked = 0
    for sample in samples:
        for (context, continuation), [(loglikelihood, _)] in zip(
            sample["arguments"], sample["resps"], strict=True
        ):
            expected = direct_loglikelihood(reference, context, continuation)
            assert abs(loglikelihood - expected) < 1e-4, (context, continuation, loglikelihood, expected)
            checked += 1
    assert checked == sum(len(d["choices"]) for d in DOCS)
    assert 0.0 <= results["results"][TASK]["acc,none"] <= 1.0
