"""Tool calling on /v1/chat/completions: the tools go into the model's chat template, and the output
comes back as `tool_calls`.

How the output is read depends on `tool_choice`, as in vLLM:
- a named function: the output is constrained to that function's parameters schema, and is its arguments;
- "required": the output is constrained to a JSON list of `{"name", "parameters"}`, one per call;
- "auto": the model decides; calls written as Hermes-style `<tool_call>{"name", "arguments"}</tool_call>`
  blocks (Qwen, Hermes and other templates that take tools) are parsed out of the text;
- "none" (or no tools): the tools change nothing and are left out of the prompt.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from api.openai.neutral import OpenAIBody, not_supported

_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
ToolMode = Literal["none", "auto", "required", "named"]


class FunctionSpec(OpenAIBody):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None  # a named or required call is always held to its schema here


class ToolSpec(OpenAIBody):
    type: Literal["function"]
    function: FunctionSpec


class FunctionName(OpenAIBody):
    name: str


class NamedToolChoice(OpenAIBody):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


def tool_mode(tools: list[ToolSpec] | None, choice: ToolChoice | None) -> ToolMode:
    """How this request treats tools; 400 for a choice that names no given tool."""
    if not tools:
        if choice in (None, "none", "auto"):
            return "none"
        raise not_supported("tool_choice", None, " without tools")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in {t.function.name for t in tools}:
            raise not_supported("tool_choice", choice.function.name, " (no tool of that name was given)")
        return "named"
    return choice or "auto"


def output_schema(
    mode: ToolMode, tools: list[ToolSpec], choice: ToolChoice | None, parallel: bool = True
) -> dict[str, Any] | None:
    """The JSON schema the output is held to: a named function's parameters, or the list of calls that
    "required" asks for (one at most unless `parallel`); None when the model writes freely."""
    if mode == "named" and isinstance(choice, NamedToolChoice):
        [tool] = [t for t in tools if t.function.name == choice.function.name]
        return tool.function.parameters
    if mode == "required":
        calls = [
            {
                "type": "object",
                "properties": {"name": {"const": t.function.name}, "parameters": t.function.parameters},
                "required": ["name", "parameters"],
                "additionalProperties": False,
            }
            for t in tools
        ]
        return {
            "type": "array",
            "minItems": 1,
            **({} if parallel else {"maxItems": 1}),
            "items": {"anyOf": calls},
        }
    return None


@dataclass(frozen=True)
class Parsed:
    content: str | None
    tool_calls: list[dict[str, Any]]


def _call(name: str, arguments: Any) -> dict[str, Any]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


def parse_output(text: str, mode: ToolMode, choice: ToolChoice | None, parallel: bool = True) -> Parsed:
    """The message's content and tool calls from the model's text (text that does not parse, such as
    JSON cut by max_tokens, stays content); the first call alone unless `parallel`."""
    if mode == "named" and isinstance(choice, NamedToolChoice):
        return Parsed(None, [_call(choice.function.name, text)])
    if mode == "required":
        try:
            calls = json.loads(text)
            return Parsed(None, [_call(c["name"], c["parameters"]) for c in calls])
        except (ValueError, TypeError, KeyError):
            return Parsed(text, [])
    if mode == "auto":
        found = []
        for block in _HERMES_CALL.findall(text):
            try:
                call = json.loads(block)
                found.append(_call(call["name"], call.get("arguments", call.get("parameters", {}))))
            except (ValueError, TypeError, KeyError):
                return Parsed(text, [])
        if found:
            found = found if parallel else found[:1]
            rest = _HERMES_CALL.sub("", text).strip()
            return Parsed(rest or None, found)
    return Parsed(text, [])
