"""A worker's proof of life for container healthchecks: a file the engine loop touches as it turns.

`python -m workers.liveness` (Compose's healthcheck) succeeds while the file is fresh, so a worker
whose engine loop hangs, even with its process alive and its heartbeat thread beating, reads as
unhealthy and is restarted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from shared.settings import get_settings

TOUCH_EVERY_S = 1.0
STALE_AFTER_S = 30.0


class Liveness:
    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._last = 0.0

    def touch(self) -> None:
        """Mark the loop alive (at most once a second; nothing when no file is configured)."""
        now = time.monotonic()
        if self.path is None or now - self._last < TOUCH_EVERY_S:
            return
        self._last = now
        self.path.touch()


def is_alive(path: Path, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether the engine loop touched the file within stale_after_s."""
    try:
        return time.time() - path.stat().st_mtime < stale_after_s
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Exit 0 while the engine loop turns; `--stale-after S` (default 30): how long a pause is too long."""
    args = argv if argv is not None else sys.argv[1:]
    stale_after = float(args[args.index("--stale-after") + 1]) if "--stale-after" in args else STALE_AFTER_S
    path = get_settings().worker_alive_file
    if not path:
        print("WORKER_ALIVE_FILE is not set", file=sys.stderr)
        return 2
    alive = is_alive(Path(path), stale_after)
    print("alive" if alive else f"the engine loop has not turned for {stale_after:.0f} s")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
