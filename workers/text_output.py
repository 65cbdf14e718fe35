"""Turns one request's token ids into streamable text: incremental detokenization and stop strings.

Without stop strings, the pieces returned concatenate to exactly
`tokenizer.decode(ids, skip_special_tokens=True)`, and no piece ends in half a UTF-8 character.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"  # what decode() yields for bytes that do not yet form a character


class TextOutput:
    def __init__(self, tokenizer: Any, stop: list[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.stop = list(stop or [])
        self.ids: list[int] = []
        self.text = ""  # everything decoded so far that is safe to show
        self.num_sent = 0  # chars of self.text already returned
        self.stopped = False
        # Window offsets (as in vLLM): decode only ids[prefix_offset:] each step, not the whole output.
        self._prefix_offset = 0
        self._read_offset = 0
        # With stop strings, hold back text that could still grow into one.
        self._hold = max((len(s) for s in self.stop), default=1) - 1

    def resume(self, ids: list[int], num_sent: int) -> None:
        """Continue after ids whose first num_sent characters of text were already sent."""
        for token_id in ids:
            self.push(token_id)
        self.num_sent = num_sent

    def _decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def push(self, token_id: int) -> str:
        """Add one token; returns the text that is now safe to send (maybe empty)."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(REPLACEMENT):
            self.text += full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
        self._check_stop()
        return self._take(final=self.stopped)

    def finish(self) -> str:
        """The rest of the text, once no token will follow (incomplete bytes decode as U+FFFD)."""
        if not self.stopped:
            prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
            full = self._decode(self.ids[self._prefix_offset :])
            self.text += full[len(prefix) :]
            self._read_offset = self._prefix_offset = len(self.ids)
            self._check_stop()
        return self._take(final=True)

    def _check_stop(self) -> None:
        # Only the unsent tail plus the longest stop string can hold a new match.
        start = max(0, self.num_sent - self._hold)
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.stopped = True

    def _take(self, final: bool) -> str:
        end = len(self.text) if final else max(self.num_sent, len(self.text) - self._hold)
        piece = self.text[self.num_sent : end]
        self.num_sent = end
        return piece
