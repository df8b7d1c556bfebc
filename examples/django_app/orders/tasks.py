"""The worker imports this module (every installed app's `tasks`)."""

from __future__ import annotations

from pgqueue.contrib.django import app

from .models import Order


@app.task(queue="emails", max_attempts=5)
def send_confirmation(order_id: int) -> dict[str, object]:
    # The job was committed with the order, so the order is always there.
    order = Order.objects.get(pk=order_id)
    # A real app would call its mail service here (safe to run twice: at least once).
    order.confirmed = True
    order.save(update_fields=["confirmed"])
    return {"order": order.pk, "sent_to": order.email}
