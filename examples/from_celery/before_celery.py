"""BEFORE: the app as it ran on Celery + Redis. Shown for comparison, not run (it needs a
broker and a result backend); tasks.py is the same app on pgqueue, and run.py runs it."""

from __future__ import annotations

import uuid
from decimal import Decimal

from celery import Celery  # type: ignore[import-not-found]
from myproject.db import load_evaluation, save_score, session  # type: ignore[import-not-found]

app = Celery("evals", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")
app.conf.task_serializer = "json"  # kombu's JSON: UUID, datetime, Decimal go through


class GpuBusy(Exception):
    pass


@app.task(bind=True, max_retries=5, queue="evals")
def process_evaluation(self, eval_id: uuid.UUID, threshold: Decimal) -> dict:  # type: ignore[no-untyped-def]
    evaluation = load_evaluation(eval_id)  # DoesNotExist if the web request has not committed yet
    try:
        score = evaluation.run(threshold)
    except GpuBusy as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    save_score(eval_id, score)
    return {"eval": str(eval_id), "score": str(score)}


def submit(eval_id: uuid.UUID) -> dict:
    with session.begin():
        session.add_evaluation(eval_id)
        process_evaluation.delay(eval_id, Decimal("0.75"))  # sent now, whatever the commit does
    return process_evaluation.AsyncResult(...).get(timeout=60)
