"""Reading tool calls out of a model's text (api/openai/tools.py), without a server."""

from __future__ import annotations

import json

from api.openai.tools import FunctionName, NamedToolChoice, parse_output


def test_hermes_blocks_become_calls_and_the_rest_stays_content() -> None:
    text = 'Let me check.\n<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    parsed = parse_output(text, "auto", "auto")
    assert parsed.content == "Let me check."
    [call] = parsed.tool_calls
    assert call["function"]["name"] == "weather" and json.loads(call["function"]["arguments"]) == {
        "city": "Oslo"
    }


def test_text_without_calls_or_with_broken_ones_stays_content() -> None:
    assert parse_output("Just text", "auto", None).tool_calls == []
    broken = "<tool_call>{not json</tool_call>"
    assert parse_output(broken, "auto", None).content == broken
    assert parse_output('[{"name": "f"', "required", "required").content == '[{"name": "f"'


def test_required_and_named_outputs() -> None:
    required = parse_output(
        '[{"name": "f", "parameters": {"a": 1}}, {"name": "g", "parameters": {}}]', "required", None
    )
    assert [c["function"]["name"] for c in required.tool_calls] == ["f", "g"] and required.content is None
    named = NamedToolChoice(type="function", function=FunctionName(name="f"))
    [call] = parse_output('{"a": 2}', "named", named).tool_calls
    assert call["function"] == {"name": "f", "arguments": '{"a": 2}'}
