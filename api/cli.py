"""`torchweave keys ...`: create, list and revoke API keys straight in Redis (REDIS_URL), for operators;
`torchweave stage MODEL`: fetch a model once into CACHE_DIR for the workers.

torchweave keys create --name alice --role user --rpm 60 --tpm 20000
torchweave keys list
torchweave keys revoke <key id>
torchweave stage Qwen/Qwen2.5-0.5B-Instruct --dtype bf16
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from pydantic import ValidationError

from api.auth import store
from api.auth.revocation import revoke_key
from api.auth.schemas import CreateKeyBody
from shared import bus
from shared.settings import get_settings


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.noun == "stage":
        return stage(args.model, args.dtype)
    settings = get_settings()
    r = bus.connect(settings.redis_url, settings.redis_tls_verify)
    if args.verb == "create":
        try:  # the same rules as POST /v1/keys
            body = CreateKeyBody(name=args.name, role=args.role, rpm=args.rpm, tpm=args.tpm)
        except ValidationError as exc:
            first = exc.errors()[0]
            print(f"--{first['loc'][0]}: {first['msg']}", file=sys.stderr)
            return 2
        secret, key = store.create(r, body.name, body.role, body.rpm, body.tpm)
        print(f"created key {key.key_id} ({key.name}, {key.role}); its secret, shown only now:\n{secret}")
    elif args.verb == "list":
        for key in store.list_keys(r):
            limits = f"rpm={key.rpm or '-'} tpm={key.tpm or '-'}"
            print(f"{key.key_id}  {key.role:5}  {limits:24}  {key.name}")
    elif (ended := revoke_key(r, args.key_id, settings.stream_ttl_s)) is None:
        print(f"no key {args.key_id!r}", file=sys.stderr)
        return 1
    else:
        print(f"revoked {args.key_id} ({ended['sessions_closed']} sessions closed, "
              f"{ended['requests_cancelled']} requests cancelled)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
