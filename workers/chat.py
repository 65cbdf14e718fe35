"""A request's prompt as token ids: the prompt text, or chat messages through the tokenizer's template
(shared/chat_template.py's fallback for a tokenizer without one)."""

from __future__ import annotations

from typing import Any

from shared.chat_template import FALLBACK_TEMPLATE
from shared.messages import GenerationRequest


def prompt_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Token ids to prefill for a request."""
    if request.prompt_ids:
        return list(request.prompt_ids)
    if not request.messages:
        ids: list[int] = tokenizer.encode(request.prompt)
        return ids
    messages = [m.for_template() for m in request.messages]
    template = None if getattr(tokenizer, "chat_template", None) else FALLBACK_TEMPLATE
    rendered = tokenizer.apply_chat_template(
        messages,
        tools=request.tools,
        chat_template=template,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    return list(rendered)
