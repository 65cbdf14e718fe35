"""Whether a TCP port can be bound, and which process listens on it, for `make run`'s checks at start."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path


def can_bind(host: str, port: int) -> bool:
    """Whether a listening socket could take host:port now (as gunicorn binds: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listener_of(port: int) -> str:
    """Who listens on `port`: "pid N (command line)", or "another process" when /proc does not say
    (not Linux, or a process of another user)."""
    inodes = _listening_inodes(port)
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    link = str(fd.readlink())
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        pid = fd_dir.parent.name
                        cmd = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                        return f"pid {pid} ({cmd[:80]})"
    return "another process"


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on `port`, from /proc/net/tcp and tcp6 (state 0A is LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes
