"""The example's app: one task. A worker imports it with --app tasks:app."""

from __future__ import annotations

from pgqueue import App

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server


@app.task(queue="emails", max_attempts=5)
def send_confirmation(order_id: int, email: str) -> dict[str, object]:
    # A real app would call its mail service here (and be safe to run twice: a job runs
    # at least once).
    return {"order": order_id, "sent_to": email}
