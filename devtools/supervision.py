"""`make run`'s process manager: supervisord, configured from the Procfile's process types.

The Procfile stays the one list of processes (Heroku reads it too). Each type becomes a supervisor
program in its own process group: a dead process is restarted, and one that keeps dying at start backs
off and is then given up on (FATAL). The embedded Redis is a program too, in its own process group, so
a Ctrl-C typed in the terminal reaches supervisord but never Redis.

The order of stopping is this configuration: supervisord stops one priority at a time, highest first,
waiting for each to end (or for its stopwaitsecs, then SIGKILL to its whole group). The workers go
first and drain while Redis and the API still serve them: what is still running at DRAIN_TIMEOUT is
handed back to the queue. Then Flower, the exporter and the API; Redis last, flushing its
append-only file, so the handed-back requests resume on the next `make run`.

Each program is started under `setpriv --pdeathsig` (util-linux): if supervisord itself is killed, its
programs get a signal from the kernel rather than living on as orphans holding their ports.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

# Stopped first (highest first), started last: workers drain while the API relays their streams and
# Redis keeps what they hand back. The API, Flower and the exporter hold no work: they form one group,
# stopped together (supervisord notices each stop only once a second, so one stage costs a second).
PRIORITY = {"worker": 900, "front": 100, "redis": 1}
GROUP = {"web": "front", "flower": "front", "metrics": "front"}
STARTSECS = {"worker": 10, "redis": 1}  # one that dies within this of starting counts as a crash at start
# Seconds each may take to stop before SIGKILL. The API's gunicorn ends its streams within a second
# (each with a `reconnect` event) and waits at most graceful_timeout (10 s) for the rest.
STOPWAITSECS = {"web": 12, "flower": 5, "metrics": 5, "redis": 10}
DRAIN_MARGIN_S = 5  # a worker's stop: DRAIN_TIMEOUT, then handing back and leaving
# What the kernel sends a program when supervisord dies: Redis flushes its file on TERM; the others are
# ended as a crash would end them (their requests come back through their expired leases).
PARENT_DEATH_SIGNAL = {"redis": "TERM"}


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


def render(
    types: list[ProcessType],
    counts: dict[str, int],
    run_dir: Path,
    drain_timeout_s: float,
    redis_argv: list[str] | None = None,
) -> str:
    """supervisord.conf for these process types, each run `counts[name]` times (1 by default), logging
    to run_dir/logs/<process>.log. With `redis_argv` Redis is a program as well, started first; the others
    then wait (autostart off) for scripts/serve.py to start them once Redis answers."""
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
    programs = [(kind, counts.get(kind.name, 1), redis_argv is None) for kind in types]
    if redis_argv is not None:
        programs.insert(0, (ProcessType("redis", shlex.join(redis_argv)), 1, True))
    programs = [p for p in programs if p[1] >= 1]
    for kind, count, autostart in programs:
        sections += _program(kind, count, autostart, logs, drain_timeout_s)
    for group, members in groups([kind for kind, _, _ in programs]).items():
        if members != [group]:
            sections += [
                f"[group:{group}]",
                f"programs={','.join(members)}",
                f"priority={priority(group)}",
                "",
            ]
    return "\n".join(sections)


def priority(group: str) -> int:
    return PRIORITY.get(group, 500)


def groups(types: list[ProcessType]) -> dict[str, list[str]]:
    """supervisord's groups of these programs, lowest priority first (the order to start them in): each
    program is a group of its own unless GROUP puts it with others."""
    members: dict[str, list[str]] = {}
    for kind in types:
        members.setdefault(GROUP.get(kind.name, kind.name), []).append(kind.name)
    return dict(sorted(members.items(), key=lambda item: priority(item[0])))


def _program(kind: ProcessType, count: int, autostart: bool, logs: Path, drain_timeout_s: float) -> list[str]:
    """One [program:x] section."""
    # `%` is supervisor's interpolation character; the shell runs the Procfile's command as written.
    command = kind.command.replace("%", "%%").replace("'", "'\"'\"'")
    setpriv = shutil.which("setpriv")
    guard = f"{setpriv} --pdeathsig {PARENT_DEATH_SIGNAL.get(kind.name, 'KILL')} " if setpriv else ""
    stopwait = STOPWAITSECS.get(kind.name, int(drain_timeout_s) + DRAIN_MARGIN_S)
    return [
        f"[program:{kind.name}]",
        f"command={guard}/bin/sh -c 'exec {command}'",
        f"numprocs={count}",
        "process_name=%(program_name)s-%(process_num)s",
        f"priority={priority(GROUP.get(kind.name, kind.name))}",
        f"autostart={str(autostart).lower()}",
        "autorestart=true",
        f"startsecs={STARTSECS.get(kind.name, 3)}",
        "startretries=5",
        "stopsignal=TERM",
        f"stopwaitsecs={stopwait}",
        "stopasgroup=false",  # the program's main process passes the signal on (the launcher does)
        "killasgroup=true",  # past stopwaitsecs, SIGKILL reaches every process it started
        "redirect_stderr=true",
        f"stdout_logfile={logs / (kind.name + '-%(process_num)s.log')}",
        "stdout_logfile_maxbytes=50MB",
        "stdout_logfile_backups=2",
        "",
    ]
