"""Incremental detokenization: pieces concatenate to decode(all ids); stop strings cut the text."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from workers.builtin_model import build_tokenizer
from workers.text_output import REPLACEMENT, TextOutput


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path: Path = tmp_path_factory.mktemp("tok")
    build_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def stream(tokenizer: Any, ids: list[int], stop: list[str] | None = None) -> list[str]:
    out = TextOutput(tokenizer, stop)
    pieces = []
    for t in ids:
        pieces.append(out.push(t))
        if out.stopped:
            break
    pieces.append(out.finish())
    return pieces


def test_multibyte_characters_are_never_split(tokenizer: Any) -> None:
    text = "héllo wörld, 日本語 and emoji 🙂🚀 done"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text)  # bytes as tokens: multibyte characters span several ids
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == text
    assert all(REPLACEMENT not in p for p in pieces)


def test_random_ids_concatenate_to_decode_of_all(tokenizer: Any) -> None:
    rng = random.Random(7)
    for _ in range(50):
        ids = [rng.randrange(0, 259) for _ in range(rng.randint(1, 60))]
        pieces = stream(tokenizer, ids)
        assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
        assert all(not p.endswith(REPLACEMENT) for p in pieces[:-1])


def test_stop_string_ends_text_before_it(tokenizer: Any) -> None:
    ids = tokenizer.encode("one two STOP three", add_special_tokens=False)
    pieces = stream(tokenizer, ids, ["STOP"])
    assert "".join(pieces) == "one two "
    assert all("S" not in p for p in pieces)  # the held-back prefix of the stop string never leaked


def test_earliest_of_several_stop_strings_wins(tokenizer: Any) -> None:
    ids = tokenizer.encode("abc END xyz STOP", add_special_tokens=False)
    assert "".join(stream(tokenizer, ids, ["STOP", "END"])) == "abc "
