"""What one generation may ask for: max_new_tokens within the model's context, and the prompt (chat
template included) with it. Returns what the generation may use at most, for its key's token budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from api import context
from api.errors import ApiError
from api.generation.token_limits import prompt_counter
from shared.messages import ChatMessage, SamplingParams, WorkerInfo


@dataclass(frozen=True)
class Choice:
    """One generation of a submission: its sampling and its prompt (text, token ids or chat messages)."""

    params: SamplingParams
    prompt: str = ""
    messages: list[ChatMessage] | None = None
    prompt_ids: list[int] | None = None
    tools: list[dict[str, Any]] | None = None  # for the chat template


def first_of_each_prompt(choices: list[Choice]) -> list[int]:
    """For each choice, the index of the first choice with the same prompt and max_new_tokens, so a prompt
    asked for n times is tokenized (and checked) once. The routes give a prompt's n choices the same prompt
    objects, so they are compared by identity: no long prompt or message list is hashed."""
    first: dict[tuple[object, ...], int] = {}
    return [
        first.setdefault(
            (choice.prompt, id(choice.messages), id(choice.prompt_ids), id(choice.tools),
             choice.params.max_new_tokens),
            i,
        )
        for i, choice in enumerate(choices)
    ]  # fmt: skip


def context_of(model: str, workers: list[WorkerInfo]) -> int | None:
    """The smallest context among the ready workers of a model; None when none is ready yet."""
    contexts = [
        w.max_model_len for w in workers if w.model == model and w.state == "ready" and w.max_model_len
    ]
    return min(contexts) if contexts else None


def check_context(model: str, choice: Choice, workers: list[WorkerInfo]) -> int:
    """400 when max_new_tokens, or the prompt (chat template included) with it, cannot fit the context.
    Returns the most tokens the generation can use: its prompt's (counted here, or its UTF-8 length
    where this process has no tokenizer for the model) plus max_new_tokens."""
    s = context.settings()
    max_new_tokens, messages = choice.params.max_new_tokens, choice.messages
    if max_new_tokens > s.max_new_tokens_limit:
        raise ApiError(
            400, f"max_new_tokens: at most {s.max_new_tokens_limit}", param="max_new_tokens", code="too_large"
        )
    counter = prompt_counter(model, s)
    n_prompt = None
    if not choice.prompt_ids:
        check_prompt_size(prompt_chars(choice), "messages" if messages else "prompt")
    if choice.prompt_ids:
        n_prompt = len(choice.prompt_ids)
        if counter is not None:
            check_token_ids(choice.prompt_ids, counter.vocab_size)
    elif counter is not None:
        n_prompt = counter.count_chat(messages, choice.tools) if messages else counter.count(choice.prompt)
    most = max_new_tokens + (n_prompt if n_prompt is not None else estimate(choice))
    max_len = context_of(model, workers)
    if max_len is None:
        return most  # no worker to ask yet: the worker that takes it refuses what cannot fit
    if max_new_tokens >= max_len:
        raise ApiError(
            400,
            f"max_new_tokens: at most {max_len - 1} for {model!r} (its context is {max_len})",
            param="max_new_tokens",
            code="too_large",
        )
    if n_prompt is not None and n_prompt + max_new_tokens > max_len:
        param = "messages" if messages else "prompt"
        raise ApiError(
            400,
            f"{param}: {n_prompt} tokens; with max_new_tokens {max_new_tokens} that exceeds "
            f"the context of {max_len} (at most {max_len - max_new_tokens} prompt tokens)",
            param=param,
            code="context_length_exceeded",
        )
    return most


def prompt_chars(choice: Choice) -> int:
    """Characters the tokenizer reads for a text or chat prompt (the messages, their tool calls and the
    tools)."""
    if choice.messages is None:
        return len(choice.prompt)
    calls = [m.tool_calls for m in choice.messages if m.tool_calls]
    extras = json.dumps([calls, choice.tools]) if calls or choice.tools else ""
    return sum(len(m.content) for m in choice.messages) + len(extras)


def check_prompt_size(num_chars: int, param: str) -> None:
    """413 for a prompt longer than MAX_PROMPT_CHARS, before any of it is tokenized."""
    limit = context.settings().max_prompt_chars
    if num_chars > limit:
        raise ApiError(
            413,
            f"{param}: {num_chars} characters; at most {limit} per generation (MAX_PROMPT_CHARS)",
            param=param,
            code="prompt_too_long",
        )


def check_token_ids(token_ids: list[int], vocab_size: int, param: str = "prompt") -> None:
    """400 for a token id past the model's vocabulary."""
    largest = max(token_ids)
    if largest >= vocab_size:
        raise ApiError(
            400,
            f"{param}: token id {largest} is out of the vocabulary (ids 0 to {vocab_size - 1})",
            param=param,
            code="invalid_token_id",
        )


def estimate(choice: Choice) -> int:
    """Tokens a prompt needs at most, without its tokenizer: its UTF-8 bytes (a byte-level tokenizer's
    count, above any BPE's)."""
    if choice.prompt_ids:
        return len(choice.prompt_ids)
    if choice.messages:
        return sum(len(m.role.encode()) + len(m.content.encode()) + 8 for m in choice.messages)
    return len(choice.prompt.encode())
