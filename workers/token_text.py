"""Tokens as text for log-probabilities: each token decoded alone (special tokens shown), cached."""

from __future__ import annotations

from typing import Any

from shared.messages import PromptTokenLogprob, TokenLogprob, TopLogprob
from workers.engine import StepOutput
from workers.engine.prompt_logprobs import PromptLogprob


class TokenText:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def text(self, token_id: int) -> str:
        """One token alone as text; cached, since logprobs name every token and its alternatives."""
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self.tokenizer.decode([token_id])
        return text

    def logprob(self, token_id: int, out: StepOutput) -> TokenLogprob:
        """The sampled token of a step output with its log-probability and its top alternatives."""
        top = [TopLogprob(token_id=t, token=self.text(t), logprob=lp) for t, lp in out.top_logprobs or []]
        return TokenLogprob(token_id=token_id, token=self.text(token_id), logprob=out.logprob or 0.0, top=top)

    def prompt_logprob(self, item: PromptLogprob) -> PromptTokenLogprob:
        """A prompt token with its log-probability and its top alternatives."""
        top = [TopLogprob(token_id=t, token=self.text(t), logprob=lp) for t, lp in item.top]
        return PromptTokenLogprob(
            token_id=item.token_id, token=self.text(item.token_id), logprob=item.logprob, top=top
        )
