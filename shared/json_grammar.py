"""What a JSON schema becomes on both sides of the queue: the API checks it and the worker enforces it
with llguidance, under the same parser limits and with the same compact JSON. Only the values live
here (shared/ imports no llguidance); each side builds its own llguidance objects from them."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings

# Compact JSON (no free whitespace between tokens): a small or random model cannot loop on blanks.
COMPACT: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


def compact(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with compact JSON unless it sets its own x-guidance."""
    return schema if "x-guidance" in schema else {**schema, "x-guidance": COMPACT}


def parser_limits(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of llguidance's LLParserLimits: how much regex a schema may build
    (GRAMMAR_LEXER_FUEL) and how much one token's mask may cost (GRAMMAR_STEP_FUEL). The pattern
    `^(a{10000}){10000}$` took 1.7-2.5 s of the first mask at llguidance's own fuel (1,000,000), then
    failed; at 50,000 it fails in 30-80 ms. Errors leave out the parser's state (it holds the schema)."""
    return {
        "initial_lexer_fuel": settings.grammar_lexer_fuel,
        "step_lexer_fuel": settings.grammar_step_fuel,
        "verbose_errors": False,
    }
