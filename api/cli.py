"""`torchweave keys ...`: create, list and revoke API keys straight in Redis, for operators;
`torchweave stage MODEL`: fetch a model once into CACHE_DIR for the workers.

The Redis is REDIS_URL when set, else the one of the `make run` running in this checkout (its embedded
Redis sits on a port of its own, recorded in CACHE_DIR/run/instance.json).

torchweave keys create --name alice --role user --rpm 60 --tpm 20000
torchweave keys list
torchweave keys revoke <key id>
torchweave stage Qwen/Qwen2.5-0.5B-Instruct --dtype bf16
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from urllib.parse import urlsplit

import redis
from pydantic import ValidationError

from api.auth import store
from api.auth.revocation import revoke_key
from api.auth.schemas import CreateKeyBody
from shared import bus, local_run
from shared.settings import Settings, SettingsError, get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchweave", description="TorchWeave administration")
    nouns = parser.add_subparsers(dest="noun", required=True)
    keys = nouns.add_parser("keys", help="API keys").add_subparsers(dest="verb", required=True)
    create = keys.add_parser("create", help="create a key and print its secret (shown only this once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute (default: no limit)")
    create.add_argument("--tpm", type=int, default=None, help="tokens per minute (default: no limit)")
    keys.add_parser("list", help="list keys (never their secrets)")
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    stage = nouns.add_parser(
        "stage", help="fetch a model into CACHE_DIR, check it, write it in the serving dtype"
    )
    stage.add_argument("model", help="a Hub id (owner/name) or a built-in model")
    stage.add_argument("--dtype", help="fp32, bf16 or fp16 (default: DTYPE, else what DEVICE serves in)")
    return parser


def stage(model: str, dtype: str | None) -> int:
    """Run the worker side's staging in its own process: it needs torch, which the API never loads."""
    command = [sys.executable, "-m", "workers.staging", model, *(["--dtype", dtype] if dtype else [])]
    return subprocess.call(command)


def redis_url(settings: Settings) -> str:
    """REDIS_URL when set, else the running `make run`'s Redis, else the default (which may be down)."""
    if "redis_url" in settings.model_fields_set:
        return settings.redis_url
    instance = local_run.running_instance(settings.cache_dir)
    return instance.redis_url if instance else settings.redis_url


def connect() -> redis.Redis:
    """A client of the Redis the keys live in; SystemExit with one line saying what to do if none answers."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise SystemExit(f"torchweave: {exc}") from None
    url = redis_url(settings)
    r = bus.connect(url, settings.redis_tls_verify)
    try:
        r.ping()
    except redis.RedisError as exc:
        where = urlsplit(url)  # never the password
        raise SystemExit(
            f"torchweave: no Redis answers at {where.hostname}:{where.port or 6379} ({exc}); start "
            "`make run` in this checkout, or set REDIS_URL to your Redis"
        ) from None
    return r


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.noun == "stage":
        return stage(args.model, args.dtype)
    if args.verb == "create":
        try:  # the same rules as POST /v1/keys
            body = CreateKeyBody(name=args.name, role=args.role, rpm=args.rpm, tpm=args.tpm)
        except ValidationError as exc:
            first = exc.errors()[0]
            print(f"--{first['loc'][0]}: {first['msg']}", file=sys.stderr)
            return 2
        secret, key = store.create(connect(), body.name, body.role, body.rpm, body.tpm)
        print(f"created key {key.key_id} ({key.name}, {key.role}); its secret, shown only now:\n{secret}")
    elif args.verb == "list":
        for key in store.list_keys(connect()):
            limits = f"rpm={key.rpm or '-'} tpm={key.tpm or '-'}"
            print(f"{key.key_id}  {key.role:5}  {limits:24}  {key.name}")
    elif (ended := revoke_key(connect(), args.key_id, get_settings().stream_ttl_s)) is None:
        print(f"no key {args.key_id!r}", file=sys.stderr)
        return 1
    else:
        print(f"revoked {args.key_id} ({ended['sessions_closed']} sessions closed, "
              f"{ended['requests_cancelled']} requests cancelled)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
