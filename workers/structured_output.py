"""Structured output: a JSON schema turned into the engine's token constraint, through llguidance.

The engine only asks a constraint which tokens may come next (workers/engine/sequence.py's
TokenConstraint); the grammar, the tokenizer and the text live here. Once the JSON is complete the
grammar allows only EOS, so a request ends with valid JSON unless max_tokens cuts it first.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import llguidance
import llguidance.hf
import llguidance.torch
import torch

from shared.json_grammar import compact


def grammar_of(schema: dict[str, Any]) -> str:
    """llguidance's grammar for a JSON schema, compact unless the schema sets its own x-guidance."""
    grammar: str = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(compact(schema)))
    return grammar


class ConstraintFailed(RuntimeError):
    """The grammar's matcher failed mid-generation: the output can no longer be valid."""


class JsonConstraint:
    """One request's matcher: it consumes the request's new tokens and answers the allowed next ones."""

    def __init__(
        self,
        tokenizer: llguidance.LLTokenizer,
        schema: dict[str, Any],
        vocab_size: int,
        limits: llguidance.LLParserLimits | None = None,
    ) -> None:
        self.matcher = llguidance.LLMatcher(tokenizer, grammar_of(schema), log_level=0, limits=limits)
        self.vocab_size = vocab_size
        self.eos = tokenizer.eos_token
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)
        self.num_consumed = 0
        self._bits = torch.arange(32, dtype=torch.int32)

    def allowed(self, output_ids: list[int]) -> torch.Tensor:
        """A bool mask [vocab] of the tokens the schema allows after output_ids (only EOS once the JSON
        is complete). Raises ConstraintFailed when the matcher fails (a grammar past its limits): the
        engine then ends this request alone with an error, rather than as a "stop" with broken JSON."""
        new = output_ids[self.num_consumed :]
        if new and not self.matcher.is_error():
            self.matcher.consume_tokens(new)
        self.num_consumed = len(output_ids)
        if not self.matcher.is_error():
            llguidance.torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        if self.matcher.is_error():
            raise ConstraintFailed(f"the response format's grammar failed: {self.matcher.get_error()}")
        # [words] int32 -> [words, 32] bits -> [vocab]
        bits = (self.bitmask[0, :, None] >> self._bits) & 1
        return bits.bool().flatten()[: self.vocab_size]


class StructuredOutput:
    """The served model's tokenizer as llguidance sees it, built once (about a second) on first use, and
    the parser limits every constraint runs under (the API checked each schema under the same ones:
    shared/json_grammar.py)."""

    def __init__(self, hf_tokenizer: Any, vocab_size: int, limits: dict[str, Any] | None = None) -> None:
        self.hf_tokenizer = hf_tokenizer
        self.vocab_size = vocab_size
        self.limits = llguidance.LLParserLimits(**(limits or {}))
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()

    def constraint(self, schema: dict[str, Any]) -> JsonConstraint:
        """A fresh constraint for one request's output."""
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = llguidance.hf.from_tokenizer(self.hf_tokenizer, n_vocab=self.vocab_size)
        return JsonConstraint(self._tokenizer, schema, self.vocab_size, self.limits)
