"""Charging a submission to its key's per-minute limits (shared/ratelimit.py): its generations against
the requests per minute before any tokenizing, then its tokens; and OpenAI's x-ratelimit-* headers on
the answer."""

from __future__ import annotations

from flask import Flask, Response, g

from api import context
from api.auth.principal import current
from api.errors import ApiError
from shared import ratelimit
from shared.messages import ApiKey, GenerationRequest, RateCharge


def count_work(num_generations: int) -> None:
    """Count work against the key's requests per minute before any is done: each generation of a
    submission (every prompt of a list, every choice of n) is one, and a /tokenize call is one. The
    tokenizing that follows costs CPU even when its request is refused, so it is counted first.
    429 (Retry-After) when the key has no room left this minute."""
    key = current().key
    if key is None or key.rpm is None:
        return
    if num_generations > key.rpm:
        raise ApiError(
            400, f"this request asks for {num_generations} generations; the key's limit is {key.rpm} per "
            "minute", code="exceeds_request_limit",
        )  # fmt: skip
    _reserve(key, requests=num_generations, tokens=0)


def charge(gens: list[GenerationRequest], tokens: list[int]) -> list[GenerationRequest]:
    """The requests with what each reserved of its key's token budget (their generations were counted
    by count_work); 429 (Retry-After) when the limit is reached, 400 when one submission needs more
    tokens than the key may use in a minute."""
    key = current().key
    if key is None or key.tpm is None:
        return gens
    total = sum(tokens)
    if total > key.tpm:
        raise ApiError(
            400, f"this request may use {total} tokens; the key's limit is {key.tpm} per minute",
            code="exceeds_token_limit",
        )  # fmt: skip
    reservation = _reserve(key, requests=0, tokens=total)
    return [
        gen.model_copy(update={"charge": RateCharge(key_id=key.key_id, window=reservation.window, tokens=n)})
        for gen, n in zip(gens, tokens, strict=True)
    ]


def _reserve(key: ApiKey, requests: int, tokens: int) -> ratelimit.Reservation:
    reservation = ratelimit.reserve(context.redis_client(), key, requests=requests, tokens=tokens)
    g.rate_headers = reservation.headers()
    if not reservation.allowed:
        retry = max(1, round(reservation.reset_s))
        raise ApiError(
            429, f"rate limit reached: {reservation.refused_by} per minute for this key; retry in {retry} s",
            code="rate_limit_exceeded", headers={**g.rate_headers, "Retry-After": str(retry)},
        )  # fmt: skip
    return reservation


def refund_all(gens: list[GenerationRequest]) -> None:
    """Give back everything these requests reserved (they were never queued)."""
    pipe = context.redis_client().pipeline(transaction=False)
    for gen in gens:
        if gen.charge is not None:
            ratelimit.refund(pipe, gen.charge, used_tokens=0)
    pipe.execute()


def _add_headers(response: Response) -> Response:
    response.headers.update(getattr(g, "rate_headers", {}))
    return response


def install(app: Flask) -> None:
    """Every answer to a charged submission carries the key's x-ratelimit-* headers."""
    app.after_request(_add_headers)
