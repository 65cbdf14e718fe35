"""lm-evaluation-harness's `local-completions` model on a tiny local multiple-choice task (a jsonl and a
task YAML, no Hub): its loglikelihoods, read from echoed prompt logprobs, equal a direct forward pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tests.e2e.clients.conftest import MODEL

TASK = "torchweave_tiny_mc"
DOCS: list[dict[str, Any]] = [
    {"question": "The sky is", "choices": ["blue", "green"], "answer": 0},
    {"question": "Two plus two is", "choices": ["four", "five", "six"], "answer": 0},
    {"question": "Fire is", "choices": ["hot", "cold"], "answer": 0},
]


def write_task(folder: Path) -> None:
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n"
    )


def direct_loglikelihood(reference: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) from one forward pass, tokenized as lm-eval does (no special tokens)."""
    tokenizer, model = reference
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
    return sum(logprobs[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_lm_eval_loglikelihoods_match_a_direct_forward_pass(
    live_url: str, model_dir: Path, reference: Any, tmp_path: Path
) -> None:
    from lm_eval import simple_evaluate  # after the offline environment is set: datasets reads it at import
    from lm_eval.tasks import TaskManager

    write_task(tmp_path)
    model_args = (
        f"model={MODEL},base_url={live_url}/v1/completions,tokenizer={model_dir},"
        "tokenizer_backend=huggingface,tokenized_requests=True,num_concurrent=1,max_retries=1"
    )
    results = simple_evaluate(
        model="local-completions",
        model_args=model_args,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(tmp_path)),
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
