"""gunicorn settings. An open stream holds a greenlet (gevent, the default) or a thread (gthread).

gevent was picked by scripts/bench_streams.py: at 500 streams it cut p99 relay latency and
memory per idle stream against gthread (figures in the README).
"""

import gc

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


def post_worker_init(worker: object) -> None:
    """Keep the garbage collector's full passes short: they stalled every open stream at once.

    Freezing what the app allocated at start-up takes those objects out of every later pass,
    and a larger first threshold makes passes rarer (p99 relay latency 139 -> 57 ms at 500 streams).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)
