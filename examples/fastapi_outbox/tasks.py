"""The pgqueue app and its task. A worker imports it with --app tasks:app."""

from __future__ import annotations

from models import Order, engine
from sqlalchemy.orm import Session

from pgqueue import App

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server


@app.task(queue="emails", max_attempts=5)
def send_confirmation(order_id: int) -> dict[str, object]:
    with Session(engine) as session, session.begin():
        order = session.get(Order, order_id)
        if order is None:  # cannot happen: the job was committed with the order
            raise LookupError(f"order {order_id} not found")
        order.confirmed = True  # a real app would call its mail service here
        return {"order": order.id, "sent_to": order.email}
