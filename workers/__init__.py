"""Celery workers: each process holds one engine and serves one model's queue."""
