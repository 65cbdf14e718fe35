"""A JSON schema tried against the served model's tokenizer before its request is queued, under the
parser limits the worker enforces it with (shared/json_grammar.py).

llguidance builds a schema's lexer lazily, token by token, so a schema that compiles can still cost the
worker seconds of engine time and a gigabyte of memory at its first tokens (`^(a{10000}){10000}$`:
about 1 s per request, 12 requests stalling every other stream 8.8 s). Here a matcher takes a few
tokens first, off the event loop (api/offload.py): a schema that fails within the limits is a 400
naming its field, and never reaches a worker. Verdicts are kept per tokenizer and grammar, so a client
repeating a schema pays once.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

from llguidance import LLMatcher, LLParserLimits, LLTokenizer

from api import context, offload
from api.errors import ApiError
from api.generation.token_limits import PromptCounter, model_files, prompt_counter
from shared.json_grammar import compact, parser_limits

PROBE_TOKENS = 8  # tokens a matcher takes here: the bad schemas seen fail at the first one
_MAX_VERDICTS = 256
_verdicts: OrderedDict[tuple[str, str], str] = OrderedDict()  # (model dir, grammar digest) -> error or ""
_tokenizers: dict[str, LLTokenizer | None] = {}


def check_grammar(model: str, schema: dict[str, Any] | None, param: str) -> None:
    """400 naming `param` when the schema's matcher fails within the parser limits on the model's
    tokenizer; nothing to check without a schema, or without the model's tokenizer here (the worker's
    limits then bound it)."""
    s = context.settings()
    files = model_files(model, s) if schema is not None else None
    counter = prompt_counter(model, s) if files is not None else None
    if schema is None or files is None or counter is None:
        return
    tokenizer = _tokenizer(str(files), counter)
    if tokenizer is None:
        return
    grammar = LLMatcher.grammar_from_json_schema(json.dumps(compact(schema)))
    key = (str(files), hashlib.sha256(grammar.encode()).hexdigest())
    error = _verdicts.get(key)
    if error is None:
        error = offload.run(_probe, tokenizer, grammar, parser_limits(s))
        _verdicts[key] = error
        if len(_verdicts) > _MAX_VERDICTS:
            _verdicts.popitem(last=False)
    if error:
        raise ApiError(
            400,
            f"{param}: the schema is too complex to enforce within the grammar limits "
            f"(GRAMMAR_LEXER_FUEL {s.grammar_lexer_fuel}, GRAMMAR_STEP_FUEL {s.grammar_step_fuel}): "
            f"{error[:300]}",
            param=param,
            code="invalid_schema",
        )


def _tokenizer(model_dir: str, counter: PromptCounter) -> LLTokenizer | None:
    """The model's tokenizer as llguidance reads it, built once (None when llguidance cannot read it)."""
    if model_dir not in _tokenizers:
        eos = counter.special.get("eos_token")
        eos_id = counter.tokenizer.token_to_id(eos) if isinstance(eos, str) else None
        try:
            _tokenizers[model_dir] = LLTokenizer(
                counter.tokenizer.to_str(), n_vocab=counter.vocab_size, eos_token=eos_id
            )
        except Exception:  # a tokenizer llguidance does not take: the worker's limits bound the schema
            _tokenizers[model_dir] = None
    return _tokenizers[model_dir]


def _probe(tokenizer: LLTokenizer, grammar: str, limits: dict[str, Any]) -> str:
    """Take up to PROBE_TOKENS tokens (the lowest id each mask allows, EOS aside); the matcher's error,
    or "" when none came up."""
    matcher = LLMatcher(tokenizer, grammar, log_level=0, limits=LLParserLimits(**limits))
    for _ in range(PROBE_TOKENS):
        if matcher.is_error():
            break
        token = _first_allowed(matcher.compute_bitmask(), tokenizer.eos_token)
        if token is None or matcher.is_error():
            break
        matcher.consume_token(token)
    if not matcher.is_error():
        return ""
    return (matcher.get_error().splitlines() or ["the matcher failed"])[0]


def _first_allowed(mask: bytes, eos: int) -> int | None:
    """The lowest token id a mask allows, EOS aside (token t is bit t % 8 of byte t // 8: llguidance's
    32-bit words, little-endian)."""
    for i, byte in enumerate(mask):
        if byte:
            for bit in range(8):
                token = i * 8 + bit
                if byte >> bit & 1 and token != eos:
                    return token
    return None
