"""litellm's completion (chat) and text_completion against the real server, streamed and not, with
penalties set."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.clients.conftest import MODEL


@pytest.fixture(scope="module")
def litellm(offline: dict[str, str]) -> Any:
    """litellm, imported once the offline environment is set: it reads its cost-map switch at import."""
    import litellm

    return litellm


@pytest.fixture(scope="module")
def args(live_url: str) -> dict[str, Any]:
    return {"api_base": f"{live_url}/v1", "api_key": "unused", "max_tokens": 10, "temperature": 0}


def test_completion_whole_and_streamed(litellm: Any, args: dict[str, Any]) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    penalties = {"frequency_penalty": 0.3, "presence_penalty": 0.3}
    whole = litellm.completion(model=f"openai/{MODEL}", messages=messages, **penalties, **args)
    text = whole.choices[0].message.content
    assert isinstance(text, str) and whole.usage.completion_tokens > 0
    stream = litellm.completion(model=f"openai/{MODEL}", messages=messages, stream=True, **penalties, **args)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == text


def test_text_completion_whole_and_streamed(litellm: Any, args: dict[str, Any]) -> None:
    model = f"text-completion-openai/{MODEL}"
    whole = litellm.text_completion(model=model, prompt="Once", frequency_penalty=0.2, **args)
    text = whole.choices[0].text
    assert isinstance(text, str) and whole.usage.prompt_tokens == 5
    stream = litellm.text_completion(model=model, prompt="Once", stream=True, frequency_penalty=0.2, **args)
    assert "".join(chunk.choices[0].text or "" for chunk in stream) == text
