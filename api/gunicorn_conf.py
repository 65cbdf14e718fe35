"""gunicorn settings. An open stream holds a thread (gthread) or a greenlet (gevent) while it waits."""

from shared.settings import get_settings

_s = get_settings()
bind = f"0.0.0.0:{_s.port}"
worker_class = _s.api_worker_class
workers = 1
threads = _s.api_threads  # gthread
worker_connections = _s.api_threads  # gevent
timeout = 0 if worker_class == "gthread" else 30  # streams stay open as long as generation runs
graceful_timeout = 10
accesslog = "-"
