"""`make run`: an embedded Redis (unless REDIS_URL is set) and the Procfile's processes under supervisord.

Before it touches anything it takes this checkout's lock (shared/local_run.py): a second `make run` here
says so in one line and leaves the first alone. A configuration some process would refuse, or a port in
use, ends it at once with one line saying what to change (devtools/preflight.py).

Ctrl-C (or SIGTERM, or the death of `make`) stops everything in the order devtools/supervision.py
configures: workers first (they drain, then hand back what still runs), Redis last. A process that dies
is restarted; one that keeps dying at start is given up on, and then `make run` stops and exits non-zero
rather than serving without it. Each process's output is shown with its name, and kept in CACHE_DIR/run/logs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.xmlrpc import SupervisorTransport

from devtools.embedded_redis import EmbeddedRedis, free_port
from devtools.preflight import refusal
from devtools.supervision import ProcessType, groups, read_procfile, render
from shared import bus, local_run, redis_memory
from shared.parent_death import die_with_parent
from shared.settings import PROJECT_ROOT, Settings, SettingsError, get_settings

POLL_S = 0.2
CRASH_LIMIT = 3  # unexpected exits of one process within CRASH_WINDOW_S: it keeps dying, stop everything
CRASH_WINDOW_S = 60.0
BIN = Path(sys.executable).parent
log = logging.getLogger("serve")


def say(line: str, code: int) -> int:
    """One line about why `make run` stops, and its exit status."""
    print(f"make run: {line}", file=sys.stderr, flush=True)
    return code


class Run:
    """One `make run`: supervisord and what it shows of its programs' output."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.logs = run_dir / "logs"
        self.sock = run_dir / "supervisor.sock"
        self.stop = threading.Event()  # set when everything has stopped (the threads end)
        self.given_up = ""  # the process supervisord gave up on, if any
        self.last_line_at = time.monotonic()
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.exits: dict[str, list[float]] = {}  # each process's recent unexpected exits

    def banner(self) -> str:
        s = self.settings
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        base = f"http://{host}:{s.port}"
        rule = "  " + "=" * 76
        return "\n".join(
            [
                "", rule, "  TorchWeave is up", "",
                f"    Web UI:  {base}/ui/", f"    API:     {base}  (try {base}/v1/models)",
                f"    Flower:  http://{host}:{s.flower_port}", f"    Metrics: http://{host}:{s.metrics_port}/metrics",
                f"    Keys:    {BIN / 'torchweave'} keys create --name me  (finds this Redis itself)", "",
                "  Ctrl-C stops everything; running requests are handed back and resume next time.",
                rule, "",
            ]
        )  # fmt: skip

    def announce_when_ready(self) -> None:
        """The banner, once /health says a worker serves and the start-up output has settled."""
        url = f"http://127.0.0.1:{self.settings.port}/health"
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                continue
        settle_until = time.monotonic() + 5
        while time.monotonic() < settle_until and time.monotonic() - self.last_line_at < 1.0:
            time.sleep(POLL_S)  # let the start-up lines pass, so the banner is the last thing on screen
        if not self.stop.is_set():
            print(self.banner(), flush=True)

    def follow_logs(self) -> None:
        """Print every process's new log lines as `name | line`; a give-up stops everything."""
        offsets: dict[Path, int] = {}
        while not self.stop.wait(POLL_S):
            for path in sorted(self.logs.glob("*.log")):
                with open(path, "rb") as f:
                    f.seek(offsets.get(path, 0))
                    chunk = f.read()
                    offsets[path] = f.tell()
                for line in chunk.decode(errors="replace").splitlines():
                    self.last_line_at = time.monotonic()
                    print(f"{path.stem:>14} | {line}", flush=True)
                    if path.stem == "supervisord" and not self.given_up:
                        self.watch(line)

    def watch(self, line: str) -> None:
        """Give up on a process supervisord gave up on (it kept dying at start), or one that keeps dying
        after its start (CRASH_LIMIT unexpected exits within CRASH_WINDOW_S): a restart loop helps nobody."""
        if "entered FATAL state" in line:
            self.give_up(line.split("gave up: ", 1)[-1].split(" ", 1)[0])
        elif "not expected)" in line and "exited: " in line:
            process = line.split("exited: ", 1)[1].split(" ", 1)[0]
            now = time.monotonic()
            recent = [t for t in self.exits.get(process, []) if now - t < CRASH_WINDOW_S] + [now]
            self.exits[process] = recent
            if len(recent) >= CRASH_LIMIT:
                self.give_up(process)

    def give_up(self, process: str) -> None:
        """A process keeps dying: show its last lines, then stop everything."""
        self.given_up = process
        log = self.logs / f"{process}.log"
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        print("\n  Its last lines:\n" + "\n".join(f"    {t}" for t in tail) + "\n", flush=True)
        say(f"{process} keeps dying (its last lines are above); stopping everything", 1)
        self.terminate()

    def terminate(self, *_: object) -> None:
        """Stop everything in the configured order (supervisord's SIGTERM does it)."""
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)

    def start_programs(self, types: list[ProcessType]) -> None:
        """Start the Procfile's programs (after Redis answers), group by group, lowest priority first."""
        transport = SupervisorTransport("", "", f"unix://{self.sock}")
        rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        for name in groups(types):
            for _ in range(50):
                try:
                    rpc.supervisor.startProcessGroup(name, False)
                    break
                except (OSError, xmlrpc.client.Fault):
                    time.sleep(POLL_S)  # its socket is not up yet


def warn_if_evicting(url: str, settings: Settings) -> None:
    """Say it loudly when Redis may evict keys (kombu's bindings among them, which loses tasks)."""
    warning = redis_memory.check_eviction_policy(bus.connect(url, settings.redis_tls_verify), log)
    if warning is not None:
        print(f"\n  WARNING: {warning}\n", flush=True)


def already_running(instance: local_run.Instance | None, cache_dir: Path) -> str:
    where = f"pid {instance.pid}, API on {instance.api_url}" if instance else "starting"
    return (
        f"already running in this checkout ({where}); stop it with Ctrl-C in its terminal, or give this "
        f"one its own CACHE_DIR (now {cache_dir})"
    )


def main() -> int:
    try:
        s = get_settings()
    except SettingsError as exc:
        return say(str(exc), 2)
    die_with_parent(signal.SIGTERM)  # `make` killed: stop everything in order, as Ctrl-C does
    signal.signal(signal.SIGHUP, signal.default_int_handler)  # until supervisord runs: leave as Ctrl-C does
    try:
        lock = local_run.claim(s.cache_dir)  # before anything is touched
    except local_run.AlreadyRunning as exc:
        return say(already_running(exc.instance, s.cache_dir), 1)
    problem = refusal(s)
    if problem:
        return say(problem, 1)

    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    run_dir = s.cache_dir / "run"
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    for old in (run_dir / "logs").glob("*.log*"):
        old.unlink()
    redis = None
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(s.cache_dir / "redis", port=free_port(), appendonly=True)
        redis.data_dir.mkdir(parents=True, exist_ok=True)
        env["REDIS_URL"] = redis.url
        print(f"embedded Redis on {redis.url}, data in {redis.data_dir}", flush=True)
    else:
        warn_if_evicting(env["REDIS_URL"], s)
    local_run.publish(lock, local_run.Instance(os.getpid(), env["REDIS_URL"], f"http://{s.host}:{s.port}"))
    types = read_procfile(PROJECT_ROOT / "Procfile")
    conf = run_dir / "supervisord.conf"
    counts = {"worker": s.num_workers}
    conf.write_text(render(types, counts, run_dir, s.drain_timeout_s, redis.argv() if redis else None))

    run = Run(s, run_dir)
    threading.Thread(target=run.follow_logs, daemon=True).start()
    # supervisord holds the lock too (pass_fds): should we die first, it is still held until it stops. It
    # has a process group of its own, out of the terminal's reach: a closed terminal's SIGHUP would make it
    # reload, so every signal of the terminal reaches it from us, as SIGTERM.
    run.supervisor = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(conf)], env=env, cwd=PROJECT_ROOT,
        pass_fds=(lock.fileno(),), preexec_fn=die_with_parent, process_group=0,
    )  # fmt: skip
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, run.terminate)
    try:
        if redis is not None:
            try:
                redis.wait_until_up(timeout_s=30)  # answers once its data is loaded
                warn_if_evicting(env["REDIS_URL"], s)
                run.start_programs([t for t in types if counts.get(t.name, 1) >= 1])
            except RuntimeError:
                run.given_up = "redis"
                say(f"the embedded Redis did not answer within 30 s; see {run.logs / 'redis-0.log'}", 1)
                run.terminate()
        threading.Thread(target=run.announce_when_ready, daemon=True).start()
        code = run.supervisor.wait()
    finally:
        run.terminate()
        run.supervisor.wait()
        time.sleep(2 * POLL_S)  # the last log lines
        run.stop.set()
    return 1 if run.given_up else code


if __name__ == "__main__":
    sys.exit(main())
