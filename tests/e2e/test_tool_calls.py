"""Tool calling on /v1/chat/completions: a named or required tool_choice holds the random model's output to
the tools' schemas, and it comes back as tool_calls whose arguments validate; streamed too."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

MODEL = "torchweave-tiny"
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 8},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"utc": {"type": "boolean"}},
    "required": ["utc"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "weather", "description": "Forecast", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "clock", "parameters": TIME}},
]
SCHEMAS = {"weather": WEATHER, "clock": TIME}
MESSAGES: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture(scope="module")
def client(live_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_named_tool_choice_returns_a_call_whose_arguments_validate(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "weather"}}
    resp = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice=named,
        max_tokens=150,
        seed=2,
        temperature=1.0,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_a_required_tool_choice_without_parallel_calls_returns_one_valid_call(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=300,
        seed=5,
        temperature=1.0,
    )
    calls = resp.choices[0].message.tool_calls or []
    assert len(calls) == 1 and resp.choices[0].finish_reason == "tool_calls", resp.choices[0]
    for call in calls:
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_a_streamed_tool_call_comes_whole_in_its_last_chunk(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "clock"}}
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice=named, max_tokens=50, stream=True
        )
    )
    [last] = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    [call] = last.choices[0].delta.tool_calls or []
    assert call.index == 0 and call.function is not None and call.function.name == "clock"
    jsonschema.validate(json.loads(call.function.arguments or ""), TIME)
    assert last.choices[0].finish_reason == "tool_calls"


def test_auto_lets_the_model_answer_in_text(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        tools=TOOLS,
        max_tokens=8,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    # The random model writes no <tool_call> block: its text is the content, and nothing is called.
    assert resp.choices[0].message.tool_calls is None and resp.choices[0].finish_reason == "length"
    unknown: Any = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(openai.BadRequestError, match="no tool of that name"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=TOOLS, tool_choice=unknown)
    bad: Any = [{"type": "function", "function": {"name": "f", "parameters": {"type": "no-such-type"}}}]
    with pytest.raises(openai.BadRequestError, match="tools: the schema cannot be enforced"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=bad, tool_choice="required")
