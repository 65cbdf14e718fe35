"""Celery tasks: a request id in, the engine does the work, the task returns when the request ends."""

from __future__ import annotations

from celery.exceptions import Reject

from shared import logs
from shared.keys import GENERATE_NOBATCH_TASK, GENERATE_TASK
from workers import control
from workers.celery_app import app
from workers.nobatch import generate_alone
from workers.service import EngineService, GiveBack, WrongModel


def engine_service() -> EngineService:
    """This worker's engine, or a rejection that puts the task back on the queue for another worker."""
    try:
        return control.service()
    except RuntimeError as exc:
        raise Reject(str(exc), requeue=True) from None


@app.task(name=GENERATE_TASK)
def generate(request_id: str) -> None:
    """Generate a stored request in the continuous batch; its tokens stream to Redis as they come."""
    with logs.bound(request_id):
        try:
            engine_service().run(request_id)
        except (WrongModel, GiveBack) as exc:
            raise Reject(str(exc), requeue=True) from None


@app.task(name=GENERATE_NOBATCH_TASK)
def generate_nobatch(request_id: str) -> None:
    """Generate a stored request alone with HF generate: the baseline batching is compared against."""
    with logs.bound(request_id):
        generate_alone(engine_service(), request_id)
