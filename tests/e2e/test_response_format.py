"""`response_format`: the random-weight model, constrained by llguidance, writes JSON valid under the
schema it was given; json_object writes an object; a schema that cannot be enforced is a 400."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

MODEL = "torchweave-tiny"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "pet": {"enum": ["cat", "dog", None]},
        "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["name", "age", "pet", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(live_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_json_schema_output_validates_against_the_schema(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}}
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "A person, please."}],
        max_tokens=200,  # the schema bounds the JSON well below this; then only EOS is allowed
        temperature=1.0,
        seed=3,
        n=3,
        response_format=fmt,
    )
    for choice in resp.choices:
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content or ""), SCHEMA)
    completion = client.completions.create(
        model=MODEL, prompt="{", max_tokens=200, seed=4, extra_body={"response_format": fmt}
    )
    jsonschema.validate(json.loads(completion.choices[0].text), SCHEMA)


def test_json_object_output_is_an_object_or_its_valid_beginning(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "JSON"}],
        max_tokens=60,
        temperature=1.0,
        seed=1,
        response_format={"type": "json_object"},
    )
    text = resp.choices[0].message.content or ""
    assert text.startswith("{")
    if resp.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    plain = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "t"}], max_tokens=8, temperature=0,
        response_format={"type": "text"},
    )  # fmt: skip
    same = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "t"}], max_tokens=8, temperature=0
    )
    assert plain.choices[0].message.content == same.choices[0].message.content


def test_a_schema_that_cannot_be_enforced_is_400(client: openai.OpenAI) -> None:
    bad: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
    with pytest.raises(openai.BadRequestError, match=r"response_format\.json_schema"):
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format=bad,
        )
