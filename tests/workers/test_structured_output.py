"""Structured output in the engine: the tiny random model, masked by llguidance token by token, writes
JSON valid under the schema, in a batch shared with unconstrained sequences."""

from __future__ import annotations

import json

import jsonschema

from tests.workers.engine.conftest import make_engine, run_to_completion
from workers.engine import SamplingOptions
from workers.model_loader import LoadedModel
from workers.structured_output import StructuredOutput

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999},
        "tag": {"type": "string", "maxLength": 6},
        "ok": {"type": "boolean"},
    },
    "required": ["id", "tag", "ok"],
    "additionalProperties": False,
}


def test_constrained_sequences_end_in_valid_json_beside_free_ones(tiny: LoadedModel) -> None:
    structured = StructuredOutput(tiny.tokenizer, tiny.model.get_input_embeddings().num_embeddings)
    engine = make_engine(tiny)
    prompt = tiny.tokenizer.encode("JSON:")
    arrivals = {
        0: [
            (
                f"json{seed}",
                prompt,
                SamplingOptions(max_new_tokens=120, seed=seed, constraint=structured.constraint(SCHEMA)),
            )
            for seed in range(3)
        ]
        + [("free", prompt, SamplingOptions(max_new_tokens=20, temperature=0.0, ignore_eos=True))]
    }
    outputs = run_to_completion(engine, arrivals)
    eos = tiny.tokenizer.eos_token_id
    for seed in range(3):
        ids = outputs[f"json{seed}"]
        assert ids[-1] == eos, tiny.tokenizer.decode(ids)  # ended by the grammar, not by max_new_tokens
        jsonschema.validate(json.loads(tiny.tokenizer.decode(ids[:-1])), SCHEMA)
    assert len(outputs["free"]) == 20


def test_a_grammar_that_fails_mid_output_ends_its_request_with_an_error_alone(tiny: LoadedModel) -> None:
    # Resumed after tokens the grammar refuses (`{"id":x`): the matcher fails on its first check, the
    # request ends with an error instead of EOS (a "stop" with broken JSON), and the free one runs on.
    structured = StructuredOutput(tiny.tokenizer, tiny.model.get_input_embeddings().num_embeddings)
    engine = make_engine(tiny)
    prompt = tiny.tokenizer.encode("JSON:")
    engine.add_request("free", prompt, SamplingOptions(max_new_tokens=20, temperature=0.0, ignore_eos=True))
    broken = SamplingOptions(max_new_tokens=40, seed=0, constraint=structured.constraint(SCHEMA))
    engine.add_request(
        "json", prompt, broken, output_ids=tiny.tokenizer.encode('{"id":x', add_special_tokens=False)
    )
    outputs: dict[str, list] = {}
    while engine.has_work():
        for out in engine.step():
            outputs.setdefault(out.seq_id, []).append(out)
    [failed] = outputs["json"]
    assert failed.finish_reason == "error" and failed.token_id is None
    assert "grammar failed" in (failed.error or "")
    assert [o.finish_reason for o in outputs["free"]][-1] == "length" and len(outputs["free"]) == 20
