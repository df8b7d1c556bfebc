"""Tasks found by pgqueue_work's autodiscovery (``<app>.tasks``)."""

from __future__ import annotations

from django.db import connection

from pgqueue.contrib.django import app

from .models import Order


@app.task(queue="shop")
def ship_order(order_id: int) -> dict[str, object]:
    order = Order.objects.get(pk=order_id)  # DoesNotExist fails the job
    order.shipped = True
    order.save(update_fields=["shipped"])
    return {"order": order_id, "email": order.email}


@app.task(queue="shop_pids")
def backend_pid() -> int:
    """The server process behind this job's Django connection."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


@app.task(queue="shop_fail", max_attempts=1)
def always_fails() -> None:
    raise RuntimeError("out of stock")
