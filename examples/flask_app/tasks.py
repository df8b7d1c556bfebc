"""The pgqueue app and its task. A worker imports it with --app tasks:app."""

from __future__ import annotations

from pgqueue import App

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server


@app.task(queue="welcome", max_attempts=5)
def send_welcome(signup_id: int, email: str) -> str:
    # A real app would call its mail service here (safe to run twice: at least once).
    return f"welcomed {email} (signup {signup_id})"
