"""A request's prompt as token ids: the prompt text, or chat messages through the tokenizer's template.

A tokenizer without a chat template gets FALLBACK_TEMPLATE: each message as `<role>: <content>`
on its own line, then `assistant:` to prompt the reply.
"""

from __future__ import annotations

from typing import Any

from shared.messages import GenerationRequest

FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def prompt_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """Token ids to prefill for a request."""
    if not request.messages:
        ids: list[int] = tokenizer.encode(request.prompt)
        return ids
    messages = [m.model_dump() for m in request.messages]
    template = None if getattr(tokenizer, "chat_template", None) else FALLBACK_TEMPLATE
    rendered = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(rendered)
