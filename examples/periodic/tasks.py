"""The example's app: two schedules. Workers import it with --app tasks:app."""

from __future__ import annotations

from datetime import UTC, datetime

from pgqueue import App

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server


@app.periodic(every="1s", queue="ticks")  # every second: quick to watch (>= 1 s)
def heartbeat_report() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# A cron schedule, read in the zone given: 09:00 Paris time on weekdays. (Declared to show
# the syntax; this run ends long before its first tick.)
@app.periodic(cron="0 9 * * mon-fri", tz="Europe/Paris", queue="reports",
              kwargs={"kind": "daily"})  # fmt: skip
def daily_report(kind: str) -> str:
    return f"{kind} report sent"
