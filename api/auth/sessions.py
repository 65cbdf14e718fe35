"""Browser sessions in Redis: a cookie stands for one key while that key keeps the secret it had when the
session opened, and for SESSION_TTL at most from then (an absolute lifetime: nothing extends it).

Only a key can open a session (a session cannot mint another, which would make its lifetime endless).
Each key keeps a set of its sessions, so revoking the key ends them all; rotating ADMIN_API_KEY ends the
bootstrap key's, since their recorded secret no longer matches.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import redis

from api.auth.store import by_digest, digest
from shared import keys
from shared.messages import ApiKey, BrowserSession


def open_session(r: redis.Redis, key_id: str, key_digest: str, ttl_s: int) -> str:
    """A new session for the key whose secret has key_digest: the cookie's value (stored only as its
    SHA-256)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    record = BrowserSession(key_id=key_id, key_digest=key_digest, created_at=now, expires_at=now + ttl_s)
    token_digest = digest(token)
    pipe = r.pipeline(transaction=True)
    pipe.set(keys.session_key(token_digest), record.model_dump_json(), ex=ttl_s)
    pipe.sadd(keys.key_sessions_key(key_id), token_digest)
    pipe.expire(keys.key_sessions_key(key_id), ttl_s)  # outlives every session in it: this is the newest
    pipe.execute()
    return token


def key_of(r: redis.Redis, token_digest: str, admin_secret: str) -> ApiKey | None:
    """The key a session (by its cookie's SHA-256) stands for; None once it was closed, has run past its
    lifetime, or its key was revoked or given a new secret."""
    raw: Any = r.get(keys.session_key(token_digest))
    if raw is None:
        return None
    session = BrowserSession.model_validate_json(raw)
    if session.expires_at <= time.time():
        return None
    key = by_digest(r, session.key_digest, admin_secret)
    return key if key is not None and key.key_id == session.key_id else None


def close_session(r: redis.Redis, token: str) -> None:
    """End one session (logging out)."""
    token_digest = digest(token)
    raw: Any = r.get(keys.session_key(token_digest))
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.session_key(token_digest))
    if raw is not None:
        pipe.srem(keys.key_sessions_key(BrowserSession.model_validate_json(raw).key_id), token_digest)
    pipe.execute()


def close_all(r: redis.Redis, key_id: str) -> int:
    """End every session of a key; how many were open."""
    client: Any = r
    token_digests: set[str] = client.smembers(keys.key_sessions_key(key_id))
    pipe = r.pipeline(transaction=True)
    for token_digest in token_digests:
        pipe.delete(keys.session_key(token_digest))
    pipe.delete(keys.key_sessions_key(key_id))
    deleted = pipe.execute()
    return sum(deleted[:-1])
