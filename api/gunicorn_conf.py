"""gunicorn settings. An open stream holds a greenlet (gevent, the default) or a thread (gthread).

gevent was picked by scripts/bench_streams.py: at 500 streams it cut p99 relay latency and
memory per idle stream against gthread (figures in the README).
"""

import gc
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared.settings import check_exposure, get_settings

_s = get_settings()
check_exposure(_s, "api")  # a public interface without ADMIN_API_KEY stops here, saying what to set
bind = f"[{_s.host}]:{_s.port}" if ":" in _s.host else f"{_s.host}:{_s.port}"
# gevent: our subclass caps connections per client address (api/http_worker.py).
worker_class = "api.http_worker.GuardedGeventWorker" if _s.api_worker_class == "gevent" else "gthread"
workers = _s.web_concurrency  # WEB_CONCURRENCY, as Heroku sets it
threads = _s.api_threads  # gthread
worker_connections = _s.api_threads  # gevent
timeout = 0 if worker_class == "gthread" else 30  # streams stay open as long as generation runs
graceful_timeout = 10
accesslog = "-"

# Every API process counts its metrics in files of this directory, and /metrics adds them all up
# (prometheus_client's multiprocess mode, api/telemetry.py). prometheus_client reads the variable
# when the app first imports it, in each process gunicorn forks from here. A directory given is
# emptied: counts left by an earlier run would be added to this one's.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="torchweave-api-")
for _stale in Path(_metrics_dir).glob("*.db"):
    _stale.unlink()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def _log_config(log_format: str) -> dict[str, Any]:
    """gunicorn's own lines, the access log and the app's, all in LOG_FORMAT with the request id."""
    text = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s%(request_suffix)s"
    escaped = {"()": "shared.logs.TextFormatter"}  # control characters escaped: no forged lines
    line = {"()": "shared.logs.JsonFormatter"} if log_format == "json" else {**escaped, "fmt": text}
    access = line if log_format == "json" else {**escaped, "fmt": "%(message)s%(request_suffix)s"}

    def handler(formatter: str, *filters: str) -> dict[str, Any]:
        return {"class": "logging.StreamHandler", "formatter": formatter, "filters": ["request_id", *filters],
                "stream": "ext://sys.stdout"}  # fmt: skip

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": "shared.logs.RequestIdFilter"},
            "redact": {"()": "shared.logs.RedactFilter"},  # a key sent as ?api_key= stays out
        },
        "formatters": {"line": line, "access": access},
        "handlers": {"console": handler("line"), "access": handler("access", "redact")},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }


logconfig_dict = _log_config(_s.log_format)  # names shared/logs.py's filter and formatter by path


def post_worker_init(worker: object) -> None:
    """Keep the garbage collector's full passes short: they stalled every open stream at once.

    Freezing what the app allocated at start-up takes those objects out of every later pass,
    and a larger first threshold makes passes rarer (p99 relay latency 139 -> 57 ms at 500 streams).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)
    # Imported in the forked process, like child_exit's: see there. Open streams end with a `reconnect`
    # event when this process is told to stop, instead of being cut at graceful_timeout.
    from api.streaming.stopping import on_sigterm_mark_stopping

    on_sigterm_mark_stopping()


def on_exit(server: object) -> None:
    """The master, stopped as asked (gunicorn's signal handlers raise StopIteration for that), leaves without
    the interpreter's teardown, which took 2 to 3 s of a loaded 2-core machine at every Ctrl-C of `make run`.
    A halt for an error (HaltServer) goes on to exit with gunicorn's status."""
    if isinstance(sys.exc_info()[1], (StopIteration, KeyboardInterrupt)):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def worker_exit(server: object, worker: Any) -> None:
    """A process that stopped as asked leaves without the interpreter's teardown: under gevent it printed
    a logging traceback ("_removeHandlerRef ... 'NoneType' object is not callable") at every stop."""
    if not worker.alive:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def when_ready(server: object) -> None:
    """The master imported the app's modules (for its worker class) and so opened a streams-open gauge
    of its own; it relays nothing, so that series leaves /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())


def child_exit(server: object, worker: Any) -> None:
    """A dead process's live gauges (streams open) leave /metrics; its counters stay in the totals."""
    # Imported here, never at the top: a prometheus_client the master loaded before the variable was
    # set would be inherited by every forked process, counting in memory instead of in the files.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
