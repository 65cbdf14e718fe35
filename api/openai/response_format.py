"""`response_format`: `text` changes nothing; `json_object` and `json_schema` constrain the output to JSON
(any object, or one valid under the schema). The worker enforces it token by token with llguidance;
here the schema is only checked, so a schema llguidance cannot compile is a 400, not a failed generation
(and api/generation/grammar_check.py then tries it on the model's tokenizer under the worker's limits)."""

from __future__ import annotations

import json
from typing import Any, Literal

from llguidance import LLMatcher
from pydantic import ConfigDict, Field, model_validator

from api.errors import ApiError
from api.openai.neutral import OpenAIBody

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class JsonSchemaSpec(OpenAIBody):
    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None  # the schema is always enforced strictly here


class ResponseFormat(OpenAIBody):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('type "json_schema" needs a json_schema object')
        return self

    def checked_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output must follow (None: free text), checked to compile."""
        if self.type == "text":
            return None
        return checked_schema(ANY_OBJECT if self.json_schema is None else self.json_schema.schema_)


def checked_schema(schema: dict[str, Any], param: str = "response_format.json_schema") -> dict[str, Any]:
    """The schema, once llguidance has compiled it; 400 naming `param` when it cannot."""
    try:
        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema))
        is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    except Exception as exc:  # llguidance raises its own kinds for schemas it cannot read
        is_error, messages = True, [str(exc)]
    if is_error:
        raise ApiError(
            400,
            f"{param}: the schema cannot be enforced: {'; '.join(messages)[:500]}",
            param=param,
            code="invalid_schema",
        )
    return schema
