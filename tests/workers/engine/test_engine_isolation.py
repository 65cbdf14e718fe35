"""One sequence's trouble stays its own: echo requests of zero new tokens (lm-eval's loglikelihood shape)
and prompt-logprob requests join a running batch of decodes, chunked prefills and preemptions without
changing anyone's tokens, and a sequence whose constraint or forward pass fails ends alone, with an error."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.workers.engine.conftest import make_engine, make_prompts, reference_greedy
from workers.engine import LLMEngine, SamplingOptions, StepOutput
from workers.model_loader import LoadedModel

DECODE = SamplingOptions(max_new_tokens=24, temperature=0.0, ignore_eos=True)
ECHO = SamplingOptions(max_new_tokens=0, temperature=0.0, prompt_logprobs=1)  # lm-eval's loglikelihood
ECHO_AND_DECODE = SamplingOptions(max_new_tokens=6, temperature=0.0, ignore_eos=True, prompt_logprobs=0)


def step_all(
    engine: LLMEngine, arrivals: dict[int, list[tuple[str, list[int], SamplingOptions, str]]]
) -> dict:
    """Step until idle, adding arrivals[k] (id, prompt, options, group) before step k; every output by id."""
    outputs: dict[str, list[StepOutput]] = {}
    step = 0
    while engine.has_work() or any(k >= step for k in arrivals):
        for seq_id, prompt, opts, group in arrivals.get(step, []):
            engine.add_request(seq_id, prompt, opts, group=group)
        for out in engine.step():
            outputs.setdefault(out.seq_id, []).append(out)
        step += 1
        assert step < 2000
    return outputs


def tokens(outs: list[StepOutput]) -> list[int]:
    return [o.token_id for o in outs if o.token_id is not None]


def prompt_logprobs(outs: list[StepOutput]) -> list[float | None]:
    [first] = [o for o in outs if o.prompt_logprobs is not None]
    return [p.logprob for p in first.prompt_logprobs or []]


def test_echo_and_prompt_logprob_requests_join_a_busy_batch_without_changing_its_tokens(
    tiny: LoadedModel,
) -> None:
    decodes = make_prompts(3, seed=31, min_len=20, max_len=30)
    echoes = make_prompts(5, seed=32, min_len=10, max_len=40)
    # A budget of 12 tokens a step chunks every prefill; group "b" arriving while "a" holds every place
    # preempts a's newest; 14 blocks of 8 cannot hold every context at once (preemptions for blocks).
    engine = make_engine(tiny, max_batch=4, max_batch_tokens=12, num_blocks=14, block_size=8)
    arrivals: dict[int, list[tuple[str, list[int], SamplingOptions, str]]] = {
        0: [(f"d{i}", p, DECODE, "a") for i, p in enumerate(decodes)]
    }
    arrivals.setdefault(3, []).append(("a-more", decodes[0][:12], DECODE, "a"))
    for i, prompt in enumerate(echoes):  # four echoes of zero tokens, one that also decodes
        opts = ECHO_AND_DECODE if i == 2 else ECHO
        arrivals.setdefault(4 + 3 * i, []).append((f"e{i}", prompt, opts, "b"))
    outputs = step_all(engine, arrivals)

    assert engine.scheduler.num_preemptions >= 1
    assert engine.stats.largest_batch == 4
    for i, prompt in enumerate(decodes):
        assert tokens(outputs[f"d{i}"]) == reference_greedy(tiny, prompt, 24, ignore_eos=True), (
            f"d{i} diverged"
        )
        assert outputs[f"d{i}"][-1].finish_reason == "length"
    assert tokens(outputs["a-more"]) == reference_greedy(tiny, decodes[0][:12], 24, ignore_eos=True)
    for i, prompt in enumerate(echoes):
        alone = make_engine(tiny, max_batch=1)
        expected = step_all(alone, {0: [("alone", prompt, ECHO_AND_DECODE if i == 2 else ECHO, "")]})["alone"]
        got = outputs[f"e{i}"]
        assert got[-1].finish_reason == "length" and got[-1].error is None
        assert tokens(got) == tokens(expected)
        assert prompt_logprobs(got)[0] is None and len(prompt_logprobs(got)) == len(prompt)
        assert prompt_logprobs(got)[1:] == pytest.approx(prompt_logprobs(expected)[1:], abs=1e-4)
    assert len(tokens(outputs["e2"])) == 6 and all(not tokens(outputs[f"e{i}"]) for i in (0, 1, 3, 4))
    assert engine.blocks.num_free == 14 and not engine.seqs


class BreaksAfter:
    """A constraint that allows every token, then fails (as a grammar can) once `n` tokens are out."""

    def __init__(self, n: int, vocab: int) -> None:
        self.n, self.vocab = n, vocab

    def allowed(self, output_ids: list[int]) -> torch.Tensor:
        if len(output_ids) >= self.n:
            raise RuntimeError("the grammar failed")
        return torch.ones(self.vocab, dtype=torch.bool)


def test_a_constraint_that_fails_ends_its_own_sequence_with_an_error(tiny: LoadedModel) -> None:
    prompts = make_prompts(4, seed=33)
    engine = make_engine(tiny, max_batch=4)
    broken = SamplingOptions(
        max_new_tokens=24, temperature=0.0, ignore_eos=True, constraint=BreaksAfter(5, engine.vocab_size)
    )
    arrivals = {0: [(f"d{i}", p, DECODE, "") for i, p in enumerate(prompts[:3])]}
    arrivals[2] = [("broken", prompts[3], broken, "")]
    outputs = step_all(engine, arrivals)

    last = outputs["broken"][-1]
    assert last.finish_reason == "error" and "the grammar failed" in (last.error or "")
    assert len(tokens(outputs["broken"])) == 5 and last.num_output_tokens == 5
    for i, prompt in enumerate(prompts[:3]):
        assert tokens(outputs[f"d{i}"]) == reference_greedy(tiny, prompt, 24, ignore_eos=True)
    assert engine.blocks.num_free == engine.blocks.num_blocks and not engine.seqs


POISON = 258  # the last id: random prompts (3 to 257) never hold it, nor do these greedy outputs


def test_a_forward_pass_that_fails_on_one_sequence_fails_that_sequence_alone(tiny: LoadedModel) -> None:
    prompts = make_prompts(3, seed=34)
    expected = [reference_greedy(tiny, p, 24, ignore_eos=True) for p in prompts]
    assert all(POISON not in p + e for p, e in zip(prompts, expected, strict=True))

    def refuse_poison(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        if bool((kwargs["input_ids"] == POISON).any()):
            raise RuntimeError("a row the model cannot run")

    engine = make_engine(tiny, max_batch=4)
    hook = tiny.model.register_forward_pre_hook(refuse_poison, with_kwargs=True)
    try:
        arrivals = {0: [(f"d{i}", p, DECODE, "") for i, p in enumerate(prompts)]}
        arrivals[3] = [("poisoned", [1, 40, POISON, 41], DECODE, "")]
        arrivals[5] = [("echo", make_prompts(1, seed=35)[0], ECHO, "")]
        outputs = step_all(engine, arrivals)
    finally:
        hook.remove()

    [out] = outputs["poisoned"]
    assert out.finish_reason == "error" and "a row the model cannot run" in (out.error or "")
    for i in range(3):
        assert tokens(outputs[f"d{i}"]) == expected[i], f"d{i} diverged"
    assert outputs["echo"][-1].finish_reason == "length" and outputs["echo"][-1].prompt_logprobs
    assert engine.blocks.num_free == engine.blocks.num_blocks and not engine.seqs
