"""FastAPI + SQLAlchemy 2: a transactional outbox with a sync Session and an AsyncSession;
a rollback leaves neither the order nor its job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings, migrate, worker  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    os.environ.update(PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema)
    migrate(dsn, schema)
    from fastapi.testclient import TestClient
    from main import api
    from models import Base, Order, engine
    from sqlalchemy import func, select, text
    from tasks import app

    Base.metadata.create_all(engine)
    jobs = []
    with TestClient(api) as client:
        for path in ("/orders", "/async/orders"):
            kind = "async" if path.startswith("/async") else "sync"
            ok = client.post(path, json={"email": f"ada+{kind}@example.com"})
            print(f"POST {path}: {ok.status_code}")
            jobs.append(app.job(ok.json()["job"]))
            no = client.post(path, json={"email": "bob@example.com", "card": "declined"})
            print(f"POST {path} declined: {no.status_code} {no.json()['detail']}")
    with engine.connect() as conn:
        bob = conn.scalar(select(func.count()).where(Order.email == "bob@example.com"))
        count = conn.scalar(
            text(f'SELECT count(*) FROM "{schema}".jobs WHERE id = ANY(:ids)'),
            {"ids": [int(j) for j in jobs]},
        )
        total = conn.scalar(text(f'SELECT count(*) FROM "{schema}".jobs'))
    print(f"orders for bob: {bob}; jobs: {total} (the two committed ones: {count})")

    with worker("tasks:app", dsn, schema, "-q", "emails"):
        for job in jobs:
            print("result:", job.result(timeout=60))
    engine.dispose()
    app.close()


if __name__ == "__main__":
    main()
