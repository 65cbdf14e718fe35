"""Celery tasks: a request id in, the engine does the work, the task returns when the request ends."""

from __future__ import annotations

from shared.keys import GENERATE_NOBATCH_TASK, GENERATE_TASK
from workers import runtime
from workers.celery_app import app
from workers.nobatch import generate_alone


@app.task(name=GENERATE_TASK)
def generate(request_id: str) -> None:
    """Generate a stored request in the continuous batch; its tokens stream to Redis as they come."""
    runtime.service().run(request_id)


@app.task(name=GENERATE_NOBATCH_TASK)
def generate_nobatch(request_id: str) -> None:
    """Generate a stored request alone with HF generate: the baseline batching is compared against."""
    generate_alone(runtime.service(), request_id)
