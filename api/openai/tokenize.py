"""vLLM's /tokenize and /detokenize: a prompt (or chat messages) as the served model's token ids, and
back. They run in the API process with the model's tokenizer files (api/generation/token_limits.py), off
its event loop, and each call counts as one request against the key's requests per minute."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import Field, model_validator

from api import context
from api.bodies import parse_body
from api.errors import ApiError
from api.generation import charges
from api.generation.limits import check_prompt_size, check_token_ids, context_of
from api.generation.submit import resolve_model
from api.generation.token_limits import PromptCounter, prompt_counter
from api.openai.chat_messages import ChatMessageIn
from api.openai.neutral import OpenAIBody
from api.route_docs import documented

bp = Blueprint("tokenize", __name__)


class TokenizeRequest(OpenAIBody):
    """POST /tokenize: a prompt, or chat messages rendered with the model's chat template."""

    model: str | None = Field(default=None, min_length=1, max_length=256)
    prompt: str | None = None
    messages: list[ChatMessageIn] | None = Field(default=None, min_length=1)
    add_special_tokens: bool | None = Field(default=None, description="default: true for a prompt")
    add_generation_prompt: bool = True
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


class DetokenizeRequest(OpenAIBody):
    """POST /detokenize: token ids back to text."""

    model: str | None = Field(default=None, min_length=1, max_length=256)
    tokens: list[int] = Field(max_length=1_000_000)


def _counter(model: str | None) -> tuple[str, PromptCounter, int | None]:
    name, workers = resolve_model(model)
    counter = prompt_counter(name, context.settings())
    if counter is None:
        raise ApiError(
            404, f"the tokenizer of {name!r} is not on the API's machine", param="model", code="no_tokenizer"
        )
    return name, counter, context_of(name, workers)


@bp.post("/tokenize")
@documented(body=TokenizeRequest, description="{count, max_model_len, tokens, token_strs}", errors=(404, 429))
def tokenize() -> Response:
    """A prompt or chat messages as the model's token ids, as the worker would prefill them."""
    req = parse_body(TokenizeRequest)
    _, counter, max_model_len = _counter(req.model)
    messages = None if req.messages is None else [m.to_message() for m in req.messages]
    chars = len(req.prompt or "") if messages is None else sum(len(m.content) for m in messages)
    check_prompt_size(chars, "prompt" if messages is None else "messages")
    charges.count_work(1)
    if messages is not None:
        ids = counter.encode_chat(messages, req.add_generation_prompt)
        if ids is None:
            raise ApiError(400, "messages: the model's chat template does not render here", param="messages")
        if req.add_special_tokens:
            ids = [*counter.encode("", add_special_tokens=True), *ids]
    else:
        ids = counter.encode(req.prompt or "", add_special_tokens=req.add_special_tokens is not False)
    body: dict[str, Any] = {
        "count": len(ids),
        "max_model_len": max_model_len,
        "tokens": ids,
        "token_strs": None,
    }
    if req.return_token_strs:
        body["token_strs"] = [counter.tokenizer.id_to_token(i) for i in ids]
    return jsonify(body)


@bp.post("/detokenize")
@documented(body=DetokenizeRequest, description="{prompt}", errors=(404, 429))
def detokenize() -> Response:
    """Token ids as text (special tokens included)."""
    req = parse_body(DetokenizeRequest)
    _, counter, _ = _counter(req.model)
    charges.count_work(1)
    if req.tokens:
        if min(req.tokens) < 0:
            raise ApiError(
                400, "tokens: token ids are integers from 0", param="tokens", code="invalid_token_id"
            )
        check_token_ids(req.tokens, counter.vocab_size, param="tokens")
    return jsonify({"prompt": counter.decode(req.tokens)})
