"""Start Flower on HOST:FLOWER_PORT behind FLOWER_BASIC_AUTH: `python -m monitoring.flower`.

Flower shows every task, so it is never served on a public interface without credentials: with
HOST public and no FLOWER_BASIC_AUTH this refuses to start and says what to set.

Flower runs inside this process, so its arguments (the broker URL, which may hold Redis's password)
never sit on a command line that `ps` shows; it reads FLOWER_BASIC_AUTH from the environment itself.
Flower 2.2 answers /metrics and /healthcheck without a login: here they ask for it like every page.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import tornado.web
from celery.bin.celery import main as celery_main
from flower import urls

from shared.settings import check_exposure, get_settings

OPEN_PATHS = ("/metrics", "/healthcheck")  # Flower's own handlers that check no credentials


def command() -> list[str]:
    """The celery flower arguments for the current settings (the password is not among them)."""
    s = get_settings()
    check_exposure(s, "flower")
    celery = shutil.which("celery") or os.path.join(os.path.dirname(sys.executable), "celery")
    broker = s.redis_url
    if broker.startswith("rediss://") and not s.redis_tls_verify and "ssl_cert_reqs" not in broker:
        broker += ("&" if "?" in broker else "?") + "ssl_cert_reqs=none"  # as kombu reads it from the URL
    return [celery, f"--broker={broker}", "flower", f"--address={s.host}", f"--port={s.flower_port}"]


def guarded(handler: type[tornado.web.RequestHandler]) -> type[tornado.web.RequestHandler]:
    """The handler, asking for Flower's login (its basic auth) before its GET."""

    class Guarded(handler):  # type: ignore[valid-type,misc]
        @tornado.web.authenticated
        async def get(self, *args: Any, **kwargs: Any) -> None:
            await super().get(*args, **kwargs)

    Guarded.__name__ = f"Guarded{handler.__name__}"
    return Guarded


def guard_open_handlers() -> None:
    """Put the guarded handlers in Flower's URL table (read when Flower's app is built)."""
    for i, spec in enumerate(urls.handlers):
        if isinstance(spec, tuple) and spec[0] in OPEN_PATHS:  # the rest are URLSpecs, tuples these two
            urls.handlers[i] = (spec[0], guarded(spec[1]), *spec[2:])


def main() -> None:
    argv = command()
    guard_open_handlers()
    sys.argv = argv  # this process's argument list only: /proc/<pid>/cmdline keeps `-m monitoring.flower`
    sys.exit(celery_main())


if __name__ == "__main__":
    main()
