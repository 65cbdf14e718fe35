"""The API counts prompt tokens exactly as the worker will prefill them: text, and chat messages through
the model's template or the fallback, with the tokenizers library alone."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from api.generation.limits import Choice, first_of_each_prompt
from api.generation.token_limits import PromptCounter
from shared.messages import ChatMessage, GenerationRequest, SamplingParams
from workers.chat import prompt_ids

MESSAGES = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="héllo wörld, 日本語 🙂 and <s> in the text"),
    ChatMessage(role="assistant", content="ok"),
    ChatMessage(role="user", content="again"),
]


def request(**kwargs: object) -> GenerationRequest:
    return GenerationRequest(
        request_id="r",
        model="m",
        params=SamplingParams(),
        created_at=time.time(),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["own template", "fallback template"])
def model_dir(request: pytest.FixtureRequest, cache_dir: Path, tmp_path: Path) -> Path:
    path = cache_dir / "models" / "torchweave-tiny"
    if request.param == "fallback template":
        copy = tmp_path / "no-template"
        shutil.copytree(path, copy)
        (copy / "chat_template.jinja").unlink()
        return copy
    return path


def test_chat_and_text_counts_match_the_worker(model_dir: Path) -> None:
    counter = PromptCounter(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert counter.count_chat(MESSAGES) == len(prompt_ids(tokenizer, request(messages=MESSAGES)))
    text = "Once upon a time, ünïcode 🙂"
    assert counter.count(text) == len(prompt_ids(tokenizer, request(prompt=text)))


def test_the_n_choices_of_a_prompt_are_checked_once() -> None:
    """Up to MAX_CHOICES choices of one long prompt must not tokenize it MAX_CHOICES times in the API."""
    params, longer = SamplingParams(seed=1), SamplingParams(max_new_tokens=99)
    chat = [Choice(SamplingParams(seed=i), messages=MESSAGES) for i in range(3)]
    ids = [7, 8, 9]
    others = [
        Choice(params, prompt="a"),
        Choice(params, prompt="a"),
        Choice(params, prompt="b"),
        Choice(longer, prompt="a"),  # a different budget: checked on its own
        Choice(params, prompt_ids=ids),
        Choice(params, prompt_ids=ids),
        Choice(params, messages=list(MESSAGES)),  # equal, not the same list: checked again, still right
    ]
    assert first_of_each_prompt(chat + others) == [0, 0, 0, 3, 3, 5, 6, 7, 7, 9]
