"""A Django project with pgqueue: a view enqueues in the request's transaction, the
worker is `manage.py pgqueue_work`, the admin shows the jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _runner import app_settings  # noqa: E402


def main() -> None:
    dsn, schema = app_settings()
    os.environ.update(
        PGQUEUE_DSN=dsn, PGQUEUE_SCHEMA=schema, DJANGO_SETTINGS_MODULE="shopsite.settings"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:  # the project's own tables go here
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}_site"')

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from orders.models import Order
    from orders.tasks import send_confirmation

    from pgqueue.contrib.django.models import Job
    from pgqueue.migrate import current_revision

    # 1. manage.py migrate: the project's tables, then pgqueue's schema
    call_command("migrate", verbosity=0)
    print(f"migrate: pgqueue schema {schema} at revision {current_revision(dsn, schema)}")

    # 2. two orders through the view; the second one's transaction is rolled back
    client = Client()
    ok = client.post("/orders/", json.dumps({"email": "ada@example.com"}), "application/json")
    print("POST /orders/ ada:", ok.status_code)
    declined = client.post(
        "/orders/", json.dumps({"email": "bob@example.com", "card": "declined"}), "application/json"
    )
    print("POST /orders/ bob:", declined.status_code, declined.json()["error"])
    print("orders for bob:", Order.objects.filter(email="bob@example.com").count())
    print("jobs for send_confirmation:", Job.objects.filter(task=send_confirmation.name).count())

    # 3. the worker: run what is due, then exit
    worker = subprocess.run(
        [sys.executable, str(HERE / "manage.py"), "pgqueue_work", "--burst"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(f"manage.py pgqueue_work --burst: exit {worker.returncode}: {worker.stdout.strip()}")
    if worker.returncode:
        print(worker.stderr, file=sys.stderr)
        sys.exit(1)
    order = Order.objects.get(pk=ok.json()["order"])
    job = Job.objects.get(pk=ok.json()["job"])
    print(f"order {order.pk} confirmed: {order.confirmed}; job {job.state}, result {job.result}")

    # 4. the read-only admin
    admin = User.objects.filter(username="admin").first() or User.objects.create_superuser(
        "admin", "admin@example.com", "admin"
    )
    client.force_login(admin)
    page = client.get("/admin/pgqueue/job/")
    listed = send_confirmation.name in page.content.decode()
    print(f"admin jobs page: {page.status_code}, lists {send_confirmation.name}: {listed}")


if __name__ == "__main__":
    main()
