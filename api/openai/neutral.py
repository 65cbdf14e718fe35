"""OpenAI's optional fields as clients send them: `null` means the default, and the fields whose given
value changes nothing here are accepted (and logged at debug) instead of refused.

Any other unsupported field or value is a 400 that says "X is not supported".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from api.errors import ApiError

log = logging.getLogger(__name__)


def _always(value: Any) -> bool:
    return True


# field -> whether a given value changes nothing here
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "metadata": _always,  # tags for OpenAI's stored completions; nothing is stored here
    "store": lambda v: v is False,
    "service_tier": lambda v: v in ("auto", "default"),
    "parallel_tool_calls": _always,  # no tool is called in parallel: nothing to turn off
}


def not_supported(field: str, value: Any = None, why: str = "") -> ApiError:
    """The 400 for a field (or one of its values) this server does not implement."""
    shown = f"{field} {value!r}" if value is not None else field
    return ApiError(400, f"{shown} is not supported{why}", param=field, code="not_supported")


def without_nulls(data: Any) -> Any:
    """The body with its null fields left out, so that each takes its default."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


class OpenAIBody(BaseModel):
    """A body, or a part of one, where null means the default; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: object) -> object:
        return without_nulls(data)


def drop_neutral(data: dict[str, Any], implemented: set[str]) -> dict[str, Any]:
    """The body without the neutral fields (bar those the body has `implemented`); 400 for one whose value
    would change something."""
    checks = {k: v for k, v in NEUTRAL.items() if k not in implemented}
    kept = {}
    for key, value in data.items():
        check = checks.get(key)
        if check is None:
            kept[key] = value
        elif check(value):
            log.debug("accepted %s=%r: it changes nothing here", key, value)
        else:
            raise not_supported(key, value)
    return kept
