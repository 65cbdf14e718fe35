"""langchain-openai's ChatOpenAI and OpenAI (completions) against the real server: invoke and stream,
with the fields LangChain sends by default (penalties of 0, n, logit_bias) and with real penalties."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI, OpenAI
from pydantic import BaseModel, Field, SecretStr

from tests.e2e.clients.conftest import MODEL


class Pet(BaseModel):
    name: str = Field(max_length=6)
    legs: int = Field(ge=0, le=8)


@pytest.fixture(scope="module")
def chat(live_url: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=f"{live_url}/v1",
        api_key=SecretStr("unused"),
        max_completion_tokens=12,
        temperature=0,
        max_retries=0,
    )


def test_chat_openai_invoke_and_stream(chat: ChatOpenAI) -> None:
    whole = chat.invoke("Hello there")
    assert isinstance(whole.content, str) and whole.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(str(chunk.content) for chunk in chat.stream("Hello there"))
    assert streamed == whole.content
    penalised = chat.bind(frequency_penalty=0.5, presence_penalty=0.5, seed=1).invoke("Hello there")
    assert isinstance(penalised.content, str)


def test_chat_openai_structured_output_through_a_json_schema(live_url: str) -> None:
    llm = ChatOpenAI(
        model=MODEL,
        base_url=f"{live_url}/v1",
        api_key=SecretStr("unused"),
        max_completion_tokens=100,
        max_retries=0,
    )
    pet = llm.with_structured_output(Pet, method="json_schema", strict=True).invoke("Describe a pet.")
    assert isinstance(pet, Pet) and len(pet.name) <= 6 and 0 <= pet.legs <= 8


def test_openai_completions_invoke_and_stream(live_url: str) -> None:
    llm = OpenAI(
        model=MODEL,
        base_url=f"{live_url}/v1",
        api_key=SecretStr("unused"),
        max_tokens=12,
        temperature=0,
        max_retries=0,
    )
    whole = llm.invoke("Once upon a time")
    assert isinstance(whole, str)
    assert "".join(llm.stream("Once upon a time")) == whole
