"""Start Flower on HOST:FLOWER_PORT behind FLOWER_BASIC_AUTH: `python -m monitoring.flower`.

Flower shows every task, so it is never served on a public interface without credentials: with
HOST public and no FLOWER_BASIC_AUTH this refuses to start and says what to set.
"""

from __future__ import annotations

import os
import shutil
import sys

from shared.settings import check_exposure, get_settings


def command() -> list[str]:
    """The celery flower command line for the current settings."""
    s = get_settings()
    check_exposure(s, "flower")
    celery = shutil.which("celery") or os.path.join(os.path.dirname(sys.executable), "celery")
    broker = s.redis_url
    if broker.startswith("rediss://") and not s.redis_tls_verify and "ssl_cert_reqs" not in broker:
        broker += ("&" if "?" in broker else "?") + "ssl_cert_reqs=none"  # as kombu reads it from the URL
    argv = [celery, f"--broker={broker}", "flower", f"--address={s.host}", f"--port={s.flower_port}"]
    if s.flower_basic_auth:
        argv.append(f"--basic-auth={s.flower_basic_auth}")
    return argv


def main() -> None:
    argv = command()
    os.execv(argv[0], argv)  # Flower takes this process over: signals reach it directly


if __name__ == "__main__":
    main()
