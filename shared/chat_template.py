"""The chat template a tokenizer without one gets: each message as `<role>: <content>` on its own line,
then `assistant:` to prompt the reply. The worker renders with it, and the API counts tokens with it."""

FALLBACK_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
