"""API keys in Redis (browser sessions are in sessions.py). A key's secret is never stored: only its
SHA-256, under which the key's record (name, role, limits) is kept. The bootstrap admin key comes from
ADMIN_API_KEY."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import redis

from shared import keys
from shared.messages import ApiKey, Role

SECRET_PREFIX = "tw-"
BOOTSTRAP_ID = "admin"  # the key id of ADMIN_API_KEY


def digest(secret: str) -> str:
    """SHA-256 of a secret, hex: what Redis holds in its place."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create(r: redis.Redis, name: str, role: Role, rpm: int | None, tpm: int | None) -> tuple[str, ApiKey]:
    """A new key: (its secret, shown once and never again, and its record)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key_digest = digest(secret)
    key = ApiKey(key_id=key_digest[:16], name=name, role=role, rpm=rpm, tpm=tpm, created_at=time.time())
    pipe = r.pipeline(transaction=True)
    pipe.set(keys.api_key_key(key_digest), key.model_dump_json())
    pipe.hset(keys.API_KEYS, key.key_id, key_digest)
    pipe.execute()
    return secret, key


def list_keys(r: redis.Redis) -> list[ApiKey]:
    """Every stored key, oldest first."""
    client: Any = r
    digests: dict[str, str] = client.hgetall(keys.API_KEYS)
    values = client.mget([keys.api_key_key(d) for d in digests.values()]) if digests else []
    found = [ApiKey.model_validate_json(v) for v in values if v is not None]
    return sorted(found, key=lambda k: k.created_at)


def revoke(r: redis.Redis, key_id: str) -> bool:
    """Delete a key's record (every credential of it fails from now on); False if there is no such key.
    revocation.revoke_key also ends what the key has open."""
    client: Any = r
    key_digest = client.hget(keys.API_KEYS, key_id)
    if key_digest is None:
        return False
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.api_key_key(key_digest))
    pipe.hdel(keys.API_KEYS, key_id)
    pipe.execute()
    return True


def by_digest(r: redis.Redis, key_digest: str, admin_secret: str) -> ApiKey | None:
    """The key whose secret has this SHA-256 (ADMIN_API_KEY's included), or None: revoked or rotated."""
    if admin_secret and hmac.compare_digest(key_digest, digest(admin_secret)):
        return ApiKey(key_id=BOOTSTRAP_ID, name="ADMIN_API_KEY", role="admin", created_at=0.0)
    raw = r.get(keys.api_key_key(key_digest))
    return None if raw is None else ApiKey.model_validate_json(raw)
