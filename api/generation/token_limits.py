"""Count a prompt's tokens in the API process with the `tokenizers` library alone (no torch): plain text,
or chat messages rendered with the model's chat template the way transformers renders it.

The files are found where a worker loads them from: the built-in model's cache directory, a local
model directory, or the Hugging Face cache under CACHE_DIR/hub (never the network). When none is
there, the check is left to the worker, which refuses a prompt that cannot fit.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from api import offload
from shared.chat_template import FALLBACK_TEMPLATE
from shared.messages import ChatMessage
from shared.model_names import local_model_dir
from shared.settings import BUILTIN_MODELS, Settings

# Text up to this long tokenizes in a few milliseconds on the request's greenlet; longer text goes to a
# thread (api/offload.py), where it cannot stall the process's other streams.
INLINE_CHARS = 4096
_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


def _raise(message: str) -> None:
    raise ValueError(message)


# As transformers compiles chat templates (a sandbox, trimmed blocks, loop controls).
_JINJA = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
_JINJA.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))


class PromptCounter:
    """One model's tokenizer and chat template, loaded once."""

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        config_file = model_dir / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_file.read_text()) if config_file.is_file() else {}
        template_file = model_dir / "chat_template.jinja"
        template = template_file.read_text() if template_file.is_file() else config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        try:
            self.template: Template | None = _JINJA.from_string(template or FALLBACK_TEMPLATE)
        except TemplateError:  # a template using an extension transformers adds: the worker checks
            self.template = None
        self.special = {
            name: value["content"] if isinstance(value, dict) else value
            for name in _SPECIAL_TOKENS
            if (value := config.get(name)) is not None
        }

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to this, exclusive (special tokens included)."""
        size: int = self.tokenizer.get_vocab_size(with_added_tokens=True)
        return size

    def count(self, prompt: str) -> int:
        """Tokens the worker prefills for a text prompt (special tokens included)."""
        return len(self.encode(prompt))

    def encode(self, prompt: str, add_special_tokens: bool = True) -> list[int]:
        """A text prompt's token ids, as the worker prefills them (special tokens included by default)."""
        if len(prompt) <= INLINE_CHARS:
            return self._encode(prompt, add_special_tokens)
        return offload.run(self._encode, prompt, add_special_tokens)

    def _encode(self, prompt: str, add_special_tokens: bool) -> list[int]:
        # encode_batch releases the GIL and encode holds it: over a 1 MB prompt another thread ran
        # 2,353 times against 13.
        [encoding] = self.tokenizer.encode_batch([prompt], add_special_tokens=add_special_tokens)
        ids: list[int] = encoding.ids
        return ids

    def decode(self, token_ids: list[int]) -> str:
        """Token ids as text, special tokens included."""
        if len(token_ids) <= INLINE_CHARS:
            return self._decode(token_ids)
        return offload.run(self._decode, token_ids)

    def _decode(self, token_ids: list[int]) -> str:
        [text] = self.tokenizer.decode_batch([token_ids], skip_special_tokens=False)
        return str(text)

    def count_chat(
        self, messages: list[ChatMessage], tools: list[dict[str, Any]] | None = None
    ) -> int | None:
        """Tokens the worker prefills for chat messages: the rendered template, no special tokens added;
        None when the template does not render here (the worker then checks)."""
        ids = self.encode_chat(messages, tools=tools)
        return None if ids is None else len(ids)

    def encode_chat(
        self,
        messages: list[ChatMessage],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int] | None:
        """Chat messages' token ids as the worker prefills them; None when the template does not render
        here."""
        if self.template is None:
            return None
        args = (self.template, messages, add_generation_prompt, tools)
        if sum(len(m.content) for m in messages) <= INLINE_CHARS:
            return self._encode_chat(*args)
        return offload.run(self._encode_chat, *args)

    def _encode_chat(
        self,
        template: Template,
        messages: list[ChatMessage],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None,
    ) -> list[int] | None:
        try:
            rendered = template.render(
                messages=[m.for_template() for m in messages],
                add_generation_prompt=add_generation_prompt,
                tools=tools,
                **self.special,
            )
        except (TemplateError, ValueError):
            return None
        return self._encode(rendered, add_special_tokens=False)


def model_files(model: str, settings: Settings) -> Path | None:
    """The directory holding a model's tokenizer.json, if it is on this machine."""
    if model in BUILTIN_MODELS:
        candidate = settings.cache_dir / "models" / model
    elif (local := local_model_dir(model, settings)) is not None:
        candidate = local
    elif model == settings.model and Path(model).is_dir():
        candidate = Path(model)
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "tokenizer.json", cache_dir=settings.cache_dir / "hub")
        except Exception:  # an id the Hub cache does not accept: leave the check to the worker
            return None
        return Path(cached).parent if isinstance(cached, str) else None
    return candidate if (candidate / "tokenizer.json").is_file() else None


@lru_cache(maxsize=16)
def _counter(model_dir: str) -> PromptCounter:
    return PromptCounter(Path(model_dir))


def prompt_counter(model: str, settings: Settings) -> PromptCounter | None:
    """The model's counter, or None when its tokenizer is not on this machine."""
    files = model_files(model, settings)
    return None if files is None else _counter(str(files))
