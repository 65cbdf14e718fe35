"""`make run`'s process manager: supervisord, configured from the Procfile's process types.

The Procfile stays the one list of processes (Heroku reads it too). Each type becomes a supervisor
program in its own process group: a dead process is restarted, one that keeps dying at start backs
off and is then given up on (FATAL) and reported, and Ctrl-C or SIGTERM stops the workers first, so
they drain while the API still relays their streams.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Stopped first (highest first), started last: workers drain while the API relays their streams.
PRIORITY = {"worker": 900, "web": 100, "flower": 200, "metrics": 200}
STARTSECS = {"worker": 10}  # a worker that dies within this of starting counts as a crash at start


@dataclass(frozen=True)
class ProcessType:
    name: str
    command: str


def read_procfile(path: Path) -> list[ProcessType]:
    """The process types of a Procfile: `name: command` lines (comments and blanks skipped)."""
    types = []
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match and not line.lstrip().startswith("#"):
            types.append(ProcessType(match.group(1), match.group(2)))
    return types


def render(types: list[ProcessType], counts: dict[str, int], run_dir: Path, drain_timeout_s: float) -> str:
    """supervisord.conf for these process types, each run `counts[name]` times (1 by default), logging
    to run_dir/logs/<process>.log."""
    logs = run_dir / "logs"
    sections = [
        "[supervisord]",
        "nodaemon=true",
        "silent=true",  # its own log goes to its file; scripts/serve.py shows it with the others
        f"logfile={logs / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"childlogdir={logs}",
        "",
        "[unix_http_server]",
        f"file={run_dir / 'supervisor.sock'}",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{run_dir / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    for kind in types:
        count = counts.get(kind.name, 1)
        if count < 1:
            continue
        # `%` is supervisor's interpolation character; the shell runs the Procfile's command as written.
        command = kind.command.replace("%", "%%").replace("'", "'\"'\"'")
        sections += [
            f"[program:{kind.name}]",
            f"command=/bin/sh -c 'exec {command}'",
            f"numprocs={count}",
            "process_name=%(program_name)s-%(process_num)s",
            f"priority={PRIORITY.get(kind.name, 500)}",
            "autorestart=true",
            f"startsecs={STARTSECS.get(kind.name, 3)}",
            "startretries=5",
            "stopsignal=TERM",
            f"stopwaitsecs={int(drain_timeout_s) + 15}",
            "stopasgroup=false",  # the program's main process passes the signal on (the launcher does)
            "killasgroup=true",  # past stopwaitsecs, SIGKILL reaches every process it started
            "redirect_stderr=true",
            f"stdout_logfile={logs / (kind.name + '-%(process_num)s.log')}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=2",
            "",
        ]
    return "\n".join(sections)
