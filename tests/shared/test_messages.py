"""Every message round-trips through JSON unchanged, and decoders refuse what they do not know."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, ValidationError

from shared.keys import queue_name, request_key, stream_key, worker_key
from shared.messages import (
    STREAM_EVENT,
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationRequest,
    RequestState,
    RequestStatus,
    SamplingParams,
    TokenEvent,
    Usage,
    WorkerInfo,
)
from shared.settings import BUILTIN_MODEL, SettingsError, settings_from_env

USAGE = Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8)
MESSAGES: list[BaseModel] = [
    SamplingParams(max_new_tokens=9, temperature=0.5, top_k=4, top_p=0.9, seed=7, stop=["\n", "END"]),
    GenerationRequest(
        request_id="r1", model="m", prompt="héllo", params=SamplingParams(), created_at=time.time()
    ),
    GenerationRequest(
        request_id="r2",
        model="m",
        prompt_ids=[1, 40, 41],
        messages=None,
        params=SamplingParams(
            max_new_tokens=0,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            logit_bias={35: -100.0},
            prompt_logprobs=2,
            json_schema={"type": "object", "properties": {"a": {"type": "integer"}}},
        ),
        created_at=time.time(),
    ),
    RequestState(
        status=RequestStatus.FINISHED,
        worker_id="w",
        started_at=1.0,
        first_token_at=1.5,
        finished_at=2.0,
        finish_reason=FinishReason.LENGTH,
        usage=USAGE,
        largest_batch=4,
    ),
    TokenEvent(index=3, text="日本"),
    DoneEvent(index=4, finish_reason=FinishReason.STOP, usage=USAGE),
    ErrorEvent(index=0, message="boom"),
    WorkerInfo(
        worker_id="w",
        host="h",
        pid=1,
        model="m",
        device="cpu",
        dtype="float32",
        vocab_size=259,
        eos_token_id=2,
        max_batch=8,
        max_model_len=2048,
        slots_used=1,
        slots_free=7,
        num_steps=10,
        largest_batch=3,
        tokens_generated=30,
        started_at=1.0,
        updated_at=2.0,
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: BaseModel) -> None:
    assert type(message).model_validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("event", [m for m in MESSAGES if isinstance(m, TokenEvent | DoneEvent | ErrorEvent)])
def test_stream_events_decode_by_type(event: BaseModel) -> None:
    assert STREAM_EVENT.validate_json(event.model_dump_json()) == event


def test_unknown_version_is_refused() -> None:
    raw = TokenEvent(index=0, text="x").model_dump() | {"v": 2}
    with pytest.raises(ValidationError):
        STREAM_EVENT.validate_python(raw)


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        TokenEvent.model_validate({"index": 0, "text": "x", "extra": 1})


def test_a_message_of_before_the_new_fields_still_decodes() -> None:
    old = '{"v": 1, "request_id": "r", "model": "m", "prompt": "p", "params": {"max_new_tokens": 4}, '
    old += '"created_at": 1}'
    params = GenerationRequest.model_validate_json(old).params
    assert params.logit_bias == {} and params.frequency_penalty == 0.0 and params.json_schema is None


def test_logit_bias_keys_arrive_as_json_strings() -> None:
    assert SamplingParams.model_validate({"logit_bias": {"35": 5}}).logit_bias == {35: 5.0}
    with pytest.raises(ValidationError):
        SamplingParams.model_validate({"logit_bias": {"a": 5}})


def test_exactly_one_prompt_form() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        GenerationRequest(
            request_id="r", model="m", prompt="p", prompt_ids=[1], params=SamplingParams(), created_at=1
        )


def test_one_stop_string_becomes_a_list() -> None:
    assert SamplingParams.model_validate({"stop": "END"}).stop == ["END"]


def test_nan_is_refused() -> None:
    with pytest.raises(ValidationError):
        SamplingParams(temperature=float("nan"))


def test_final_statuses() -> None:
    assert {s for s in RequestStatus if s.is_final} == {"finished", "cancelled", "failed"}


def test_keys_are_distinct_and_queue_names_safe() -> None:
    assert len({request_key("a"), stream_key("a"), worker_key("a")}) == 3
    assert queue_name("org/Model name:v1") == "model.org_Model_name_v1"


def test_settings_read_the_environment() -> None:
    s = settings_from_env({"REDIS_URL": "redis://x:1/2", "MAX_BATCH": "3", "MODEL": "m", "STREAM_TTL": "60"})
    assert (s.redis_url, s.max_batch, s.model, s.stream_ttl_s) == ("redis://x:1/2", 3, "m", 60)
    assert settings_from_env({}).model == BUILTIN_MODEL


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MAX_BATCH": "abc"}, "MAX_BATCH"),
        ({"ALLOW_PICKLE": "maybe"}, "ALLOW_PICKLE"),
        ({"PORT": "-1"}, "PORT"),
    ],
)
def test_a_bad_setting_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        settings_from_env(env)


def test_booleans_and_lists_read_as_people_write_them() -> None:
    s = settings_from_env({"ALLOW_PICKLE": "true", "AUTOLOAD": "1", "TRUSTED_MODELS": "a/b, c/d"})
    assert s.allow_pickle and s.autoload and s.trusted_models == ("a/b", "c/d")
    assert not settings_from_env({"ALLOW_PICKLE": "false"}).allow_pickle
