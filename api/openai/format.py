"""OpenAI's response bodies and stream chunks, built from our stream events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.messages import TokenLogprob

# Our finish reasons that OpenAI's clients do not know, as the closest one they do.
_FINISH = {"timeout": "length"}


def finish_reason(reason: str) -> str:
    return _FINISH.get(reason, reason)


@dataclass
class Choice:
    """What one choice has produced so far."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def completion_logprobs(logprobs: list[TokenLogprob], start_offset: int = 0) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, their logprobs, top maps and text offsets."""
    offsets, offset = [], start_offset
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [{t.token: t.logprob for t in lp.top} for lp in logprobs],
        "text_offset": offsets,
    }


def chat_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    """The chat shape: one entry per token, each with its own top alternatives."""
    return {
        "content": [
            {
                "token": lp.token,
                "logprob": lp.logprob,
                "bytes": list(lp.token.encode()),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode())} for t in lp.top
                ],
            }
            for lp in logprobs
        ]
    }


def usage(choices: list[Choice], num_prompts: int) -> dict[str, int]:
    """Prompt tokens once per prompt (n choices share it), completion tokens of every choice."""
    per_prompt = len(choices) // max(1, num_prompts)
    prompt = sum(c.prompt_tokens for i, c in enumerate(choices) if i % per_prompt == 0)
    completion = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
