"""Claim, cancel, leases and requeue on a real Redis: whichever races, exactly one wins."""

from __future__ import annotations

import time
import uuid

import redis

from shared import admission, bus, keys, lifecycle, ratelimit, timeline
from shared.messages import (
    ApiKey,
    DoneEvent,
    ErrorEvent,
    FinishReason,
    GenerationRequest,
    RateCharge,
    RequestState,
    RequestStatus,
    SamplingParams,
    TokenEvent,
)


def queued(r: redis.Redis, charge: RateCharge | None = None) -> GenerationRequest:
    """A stored, queued request for a model of its own (so queue positions start at 0)."""
    req = GenerationRequest(
        request_id=uuid.uuid4().hex,
        model=f"m-{uuid.uuid4().hex}",
        prompt="p",
        params=SamplingParams(),
        created_at=time.time(),
        charge=charge,
    )
    admission.admit(r, [req], ttl_s=60)
    return req


def state_of(r: redis.Redis, req: GenerationRequest) -> RequestState:
    stored = bus.load_request(r, req.request_id)
    assert stored is not None
    return stored.state


def test_cancel_while_queued_ends_it_and_no_worker_can_claim_it(r: redis.Redis) -> None:
    req = queued(r)
    assert bus.queue_position(r, req, ttl_s=60) == 0
    assert lifecycle.cancel(r, req, ttl_s=60) == "queued"
    state = state_of(r, req)
    assert state.status == RequestStatus.CANCELLED and state.finish_reason == FinishReason.CANCELLED
    events = bus.read_events(r, req.request_id)
    assert len(events) == 1 and isinstance(events[0], DoneEvent) and events[0].index == 0
    assert bus.queue_position(r, req, ttl_s=60) is None
    assert not lifecycle.claim(r, req, "w1", lease_s=60)
    assert lifecycle.cancel(r, req, ttl_s=60) == "cancelled"


def test_cancel_refunds_a_queued_request_and_records_the_ask(r: redis.Redis) -> None:
    key = ApiKey(key_id=uuid.uuid4().hex, name="k", role="user", created_at=0.0, tpm=1000)
    reservation = ratelimit.reserve(r, key, requests=1, tokens=100)
    tokens_key = keys.rate_key(key.key_id, "tok", reservation.window)
    assert int(r.get(tokens_key) or 0) == 100
    req = queued(r, RateCharge(key_id=key.key_id, window=reservation.window, tokens=100))
    assert lifecycle.cancel(r, req, ttl_s=60) == "queued"
    assert int(r.get(tokens_key) or 0) == 0  # it never ran: every reserved token is back
    assert [(s["kind"], s["was"]) for s in timeline.read(r, req.request_id)] == [("cancel_asked", "queued")]
    assert lifecycle.cancel(r, req, ttl_s=60) == "cancelled"
    assert int(r.get(tokens_key) or 0) == 0  # a second cancel gives nothing back twice
    assert len(timeline.read(r, req.request_id)) == 1


def test_cancel_after_claim_flags_the_worker(r: redis.Redis) -> None:
    req = queued(r)
    assert lifecycle.claim(r, req, "w1", lease_s=60)
    assert not lifecycle.claim(r, req, "w2", lease_s=60)  # one owner at a time
    assert bus.queue_position(r, req, ttl_s=60) is None
    assert lifecycle.cancel(r, req, ttl_s=60) == "running"
    pipe = r.pipeline()
    lifecycle.check_running(pipe, [req.request_id, "other"])
    assert pipe.execute()[-1] == ["cancel", "gone"]
    assert bus.read_events(r, req.request_id) == []  # the worker, not the API, ends a running request


def run_out(r: redis.Redis, req: GenerationRequest) -> None:
    """Let a lease run out without waiting for it: its expiry moves a minute into the past."""
    r.zadd(keys.LEASES, {req.request_id: time.time() - 60}, xx=True)


def test_expired_lease_requeues_then_fails_after_max_attempts(r: redis.Redis) -> None:
    req = queued(r)
    for attempt in range(1, 3):
        assert lifecycle.claim(r, req, f"w{attempt}", lease_s=60)
        # The lease is still live: nothing to requeue yet.
        assert lifecycle.requeue(r, req, holder=None, max_attempts=3, ttl_s=60) == "skipped"
        run_out(r, req)
        assert req.request_id in lifecycle.expired_leases(r)
        assert lifecycle.requeue(r, req, holder=None, max_attempts=3, ttl_s=60) == "requeued"
        assert state_of(r, req).status == RequestStatus.QUEUED and state_of(r, req).worker_id is None
        assert bus.queue_position(r, req, ttl_s=60) == 0
    assert lifecycle.claim(r, req, "w3", lease_s=60)
    pipe = r.pipeline()
    bus.append_event(pipe, req.request_id, TokenEvent(index=0, text="partial"))
    pipe.execute()
    run_out(r, req)
    assert lifecycle.requeue(r, req, holder=None, max_attempts=3, ttl_s=60) == "failed"
    state = state_of(r, req)
    assert state.status == RequestStatus.FAILED and "3 workers" in (state.error or "")
    events = bus.read_events(r, req.request_id)
    assert isinstance(events[-1], ErrorEvent) and events[-1].index == 1
    assert req.request_id not in lifecycle.expired_leases(r)


def test_a_request_failed_after_max_attempts_gives_its_reserved_tokens_back(r: redis.Redis) -> None:
    key = ApiKey(key_id=uuid.uuid4().hex, name="k", role="user", created_at=0.0, tpm=1000)
    reservation = ratelimit.reserve(r, key, requests=1, tokens=100)
    tokens_key = keys.rate_key(key.key_id, "tok", reservation.window)
    req = queued(r, RateCharge(key_id=key.key_id, window=reservation.window, tokens=100))
    assert lifecycle.claim(r, req, "w1", lease_s=60)
    run_out(r, req)
    assert lifecycle.requeue(r, req, holder=None, max_attempts=2, ttl_s=60) == "requeued"
    assert int(r.get(tokens_key) or 0) == 100  # requeued: still reserved for the next worker
    assert lifecycle.claim(r, req, "w2", lease_s=60)
    run_out(r, req)
    assert lifecycle.requeue(r, req, holder=None, max_attempts=2, ttl_s=60) == "failed"
    assert int(r.get(tokens_key) or 0) == 0
    assert lifecycle.requeue(r, req, holder=None, max_attempts=2, ttl_s=60) == "skipped"
    assert int(r.get(tokens_key) or 0) == 0  # nothing given back twice


def test_renewed_lease_does_not_expire(r: redis.Redis) -> None:
    req = queued(r)
    lifecycle.claim(r, req, "w", lease_s=60)
    run_out(r, req)
    pipe = r.pipeline()
    lifecycle.renew_leases(pipe, [req.request_id], lease_s=60, worker_id="w")
    pipe.execute()
    assert req.request_id not in lifecycle.expired_leases(r)
    pipe = r.pipeline()
    lifecycle.release(pipe, req.request_id)
    pipe.execute()
    assert r.zscore(keys.LEASES, req.request_id) is None


def test_only_the_holder_hands_a_request_back(r: redis.Redis) -> None:
    req = queued(r)
    lifecycle.claim(r, req, "owner", lease_s=60)
    assert lifecycle.requeue(r, req, holder="someone-else", max_attempts=3, ttl_s=60) == "skipped"
    assert lifecycle.requeue(r, req, holder="owner", max_attempts=3, ttl_s=60) == "requeued"
    assert state_of(r, req).status == RequestStatus.QUEUED
    assert lifecycle.claim(r, req, "next", lease_s=60)


def test_a_request_queued_too_long_is_dispatched_again_until_claimed(r: redis.Redis) -> None:
    req = queued(r)
    assert req.request_id not in admission.stale_dispatches(r, older_than_s=60)
    r.zadd(keys.DISPATCH, {req.request_id: time.time() - 120})  # its task went out two minutes ago
    assert req.request_id in admission.stale_dispatches(r, older_than_s=60)
    assert admission.redispatch(r, req.request_id, older_than_s=60)
    assert not admission.redispatch(r, req.request_id, older_than_s=60)  # just sent: not again yet
    assert lifecycle.claim(r, req, "w", lease_s=60)
    assert req.request_id not in admission.stale_dispatches(r, older_than_s=0)
    assert not admission.redispatch(r, req.request_id, older_than_s=0)  # claimed: nothing to send


def test_fail_queued_ends_only_the_queued_requests_of_a_model_with_the_reason(r: redis.Redis) -> None:
    waiting = queued(r)
    running = GenerationRequest(**{**waiting.model_dump(), "request_id": uuid.uuid4().hex})
    admission.admit(r, [running], ttl_s=60)
    assert lifecycle.claim(r, running, "w", lease_s=30)
    pipe = r.pipeline()
    bus.append_event(pipe, waiting.request_id, TokenEvent(index=0, text="from an earlier worker"))
    pipe.execute()
    assert admission.fail_queued(r, waiting.model, "model gone", ttl_s=60) == 1
    state = state_of(r, waiting)
    assert state.status == RequestStatus.FAILED and state.error == "model gone"
    events = bus.read_events(r, waiting.request_id)
    assert isinstance(events[-1], ErrorEvent) and events[-1].index == 1 and events[-1].message == "model gone"
    assert bus.queue_position(r, waiting, ttl_s=60) is None
    assert state_of(r, running).status == RequestStatus.RUNNING  # a running request is not touched
    assert admission.fail_queued(r, waiting.model, "again", ttl_s=60) == 0


def test_each_claim_has_a_new_epoch_and_the_old_holder_renews_no_lease(r: redis.Redis) -> None:
    req = queued(r)
    first = lifecycle.claim(r, req, "w1", lease_s=60)
    run_out(r, req)
    assert lifecycle.requeue(r, req, holder=None, max_attempts=3, ttl_s=60) == "requeued"
    assert lifecycle.claim(r, req, "w2", lease_s=60) == first + 1
    run_out(r, req)
    pipe = r.pipeline()
    lifecycle.renew_leases(pipe, [req.request_id], lease_s=60, worker_id="w1")  # w1 woke up: not its lease
    lifecycle.check_running(pipe, [req.request_id, req.request_id], [first, first + 1])
    assert pipe.execute()[-1] == ["lost", ""]
    assert req.request_id in lifecycle.expired_leases(r)
