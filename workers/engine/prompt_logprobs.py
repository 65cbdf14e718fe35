"""The log-probabilities of a prompt's own tokens, each given the tokens before it (echo with logprobs,
as lm-evaluation-harness's loglikelihood asks for). The first prompt token has none."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PromptLogprob:
    token_id: int
    logprob: float | None  # None for the first token: nothing comes before it
    top: list[tuple[int, float]]  # the most likely tokens at that position, best first


def prompt_logprobs(
    chunk_logits: torch.Tensor, prompt_ids: list[int], start: int, k: int
) -> list[PromptLogprob]:
    """For a prefill chunk whose rows are positions start .. start + n - 1: the logprob of the prompt
    token that follows each position (those past the prompt are skipped)."""
    n = chunk_logits.shape[0]
    targets = [(i, prompt_ids[start + i + 1]) for i in range(n) if start + i + 1 < len(prompt_ids)]
    if not targets:
        return []
    rows = torch.tensor([i for i, _ in targets], device=chunk_logits.device)
    logprobs = torch.log_softmax(chunk_logits[rows], dim=-1)
    chosen = logprobs.gather(1, torch.tensor([[t] for _, t in targets], device=logprobs.device))[
        :, 0
    ].tolist()
    top_values, top_ids = torch.topk(logprobs, k) if k else (logprobs[:, :0], logprobs[:, :0].long())
    return [
        PromptLogprob(token, float(lp), list(zip(ids, values, strict=True)))
        for (_, token), lp, ids, values in zip(
            targets, chosen, top_ids.tolist(), top_values.tolist(), strict=True
        )
    ]
