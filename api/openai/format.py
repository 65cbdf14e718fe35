"""OpenAI's response bodies and stream chunks, built from our stream events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.messages import PromptTokenLogprob, TokenLogprob

# Our finish reasons that OpenAI's clients do not know, as the closest one they do.
_FINISH = {"timeout": "length"}


def finish_reason(reason: str) -> str:
    return _FINISH.get(reason, reason)


@dataclass
class Choice:
    """What one choice has produced so far."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[PromptTokenLogprob] = field(default_factory=list)  # echo
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def completion_logprobs(
    logprobs: Sequence[TokenLogprob | PromptTokenLogprob], start_offset: int = 0
) -> dict[str, Any]:
    """The legacy completions shape: parallel lists of tokens, their logprobs, top maps and text offsets.
    The first token of an echoed prompt has neither logprob nor top map (null), as in vLLM."""
    offsets, offset = [], start_offset
    for lp in logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in logprobs],
        "token_logprobs": [lp.logprob for lp in logprobs],
        "top_logprobs": [
            None if lp.logprob is None else {t.token: t.logprob for t in lp.top} for lp in logprobs
        ],
        "text_offset": offsets,
    }


def echoed_text(prompt: str | None, prompt_logprobs: list[PromptTokenLogprob]) -> str:
    """The prompt as echoed: its text, or for a prompt given as token ids, its tokens' texts."""
    return prompt if prompt is not None else "".join(lp.token for lp in prompt_logprobs)


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
    """Prompt tokens once per prompt (n choices share it), completion tokens of every choice (mid-stream:
    those so far)."""
    per_prompt = len(choices) // max(1, num_prompts)
    prompt = sum(c.prompt_tokens for i, c in enumerate(choices) if i % per_prompt == 0)
    completion = sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
