"""What `make run` checks before it starts anything: a configuration that a process would refuse, and the
ports it needs. Each problem is one line naming the variable to set, or the port and who holds it, so
`make run` can stop at once instead of letting supervisord restart a process that can never start."""

from __future__ import annotations

from devtools.ports import can_bind, listener_of
from shared.settings import Settings, missing_credentials


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def refusal(settings: Settings) -> str | None:
    """Why `make run` must not start with these settings, in one line; None when it may."""
    missing = missing_credentials(settings)
    if missing:
        return (
            f"HOST={settings.host} would serve the {_and(list(missing))} to every network this machine is on "
            f"with no credentials: set {_and(list(missing.values()))}, or bind HOST=127.0.0.1"
        )
    s = settings
    ports = {"PORT": s.port, "FLOWER_PORT": s.flower_port, "METRICS_PORT": s.metrics_port}
    for variable, port in ports.items():
        if port and not can_bind(settings.host, port):
            return (
                f"port {port} ({variable}) on {settings.host} is in use by {listener_of(port)}: stop it, "
                f"or set {variable} to a free port"
            )
    return None
