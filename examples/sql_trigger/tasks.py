"""The example's app: the task the trigger enqueues, by name."""

from __future__ import annotations

from pgqueue import App

app = App()


@app.task(name="welcome.send", queue="emails")
def welcome(signup_id: int, email: str) -> str:
    return f"welcomed {email} (signup {signup_id})"
