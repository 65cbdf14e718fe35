"""Chat messages as OpenAI's clients and agents send them: text or a list of text parts, assistant
messages that carry tool calls (with null content), and tool results."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from api.openai.neutral import OpenAIBody
from shared.messages import ChatMessage


class ContentPart(OpenAIBody):
    type: Literal["text"] = Field(description="only text parts are supported")
    text: str


class FunctionCall(OpenAIBody):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=100_000, description="the arguments, as a JSON string")


class ToolCall(OpenAIBody):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageIn(OpenAIBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=64)
    tool_call_id: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _content_or_calls(self) -> ChatMessageIn:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(
                "content is required (it may be null only in an assistant message with tool_calls)"
            )
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    def to_message(self) -> ChatMessage:
        content = self.content or ""
        text = content if isinstance(content, str) else "".join(p.text for p in content)
        calls = [c.model_dump() for c in self.tool_calls] if self.tool_calls else None
        return ChatMessage(
            role="system" if self.role == "developer" else self.role,
            content=text,
            tool_calls=calls,
            tool_call_id=self.tool_call_id,
            name=self.name,
        )
