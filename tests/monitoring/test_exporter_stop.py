"""The exporter ends cleanly on SIGTERM: as a container's PID 1 a signal without a handler is ignored, and
`docker compose down` then waited its whole timeout for the SIGKILL (tests/deploy/live measures that)."""

from __future__ import annotations

import signal
from pathlib import Path

from devtools.servers import start_exporter


def test_sigterm_ends_the_exporter_with_status_0(server_env: dict[str, str], log_dir: Path) -> None:
    proc, _ = start_exporter({**server_env, "METRICS_TOKEN": "t"}, log_dir)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(timeout=30) == 0, proc.log_tail()  # a handled stop, not death by the signal
    proc.stop()
