"""gunicorn settings: threads, since each open stream holds one while it waits on Redis."""

from shared.settings import get_settings

bind = f"0.0.0.0:{get_settings().port}"
worker_class = "gthread"
workers = 1
threads = 64
timeout = 0  # streams stay open as long as generation runs; heartbeats keep proxies alive
graceful_timeout = 10
accesslog = "-"
