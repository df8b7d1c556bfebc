"""pgqueue.contrib.django with real Django against the test PostgreSQL: settings made
here, ``manage.py migrate`` (which brings pgqueue's schema too), jobs enqueued inside
``transaction.atomic()`` on Django's own connection, ``pgqueue_work --burst``, the
read-only admin."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import CommandError  # noqa: E402

from pgqueue.errors import ConfigurationError  # noqa: E402
from pgqueue.migrate import HEAD_REVISION, current_revision  # noqa: E402


def _drop(dsn: str, *schemas: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="module")
def project(pg_dsn: str) -> Iterator[dict[str, str]]:
    """Django configured on the test database: its own tables in a schema of their own
    (search_path), pgqueue's in another; both dropped at the end."""
    if settings.configured:
        pytest.skip("Django settings were configured by another test module")
    tag = uuid.uuid4().hex[:10]
    names = {"pgqueue": f"t_{tag}", "django": f"dj_{tag}", "appname": f"djtest-{tag}"}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{names["django"]}"')
    parts = conninfo_to_dict(pg_dsn)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test",
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="tests.contrib.djshop.urls",
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.get("dbname", ""),
                "USER": parts.get("user", ""),
                "PASSWORD": parts.get("password", ""),
                "HOST": parts.get("host", ""),
                "PORT": parts.get("port", ""),
                "OPTIONS": {
                    "options": f"-c search_path={names['django']}",
                    "application_name": names["appname"],
                },
            }
        },
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "pgqueue.contrib.django",
            "tests.contrib.djshop",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        PGQUEUE={"SCHEMA": names["pgqueue"], "WORKER": {"poll_interval": 0.2}},
    )
    django.setup()
    try:
        yield names
    finally:
        from django.db import connections

        from pgqueue.contrib.django.application import reset

        reset()
        connections.close_all()
        _drop(pg_dsn, names["pgqueue"], names["django"])


@pytest.fixture(scope="module")
def migrated(project: dict[str, str], pg_dsn: str) -> dict[str, str]:
    assert current_revision(pg_dsn, project["pgqueue"]) is None
    call_command("migrate", verbosity=0)
    return project


def _jobs_seen_elsewhere(dsn: str, schema: str, task: str, args: list[Any]) -> int:
    """Jobs with these arguments, read on a connection of its own (committed rows only)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".all_jobs WHERE task = %s AND args = %s::jsonb',
            (task, psycopg.types.json.Jsonb(args)),
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_migrate_brings_pgqueue_schema(migrated: dict[str, str], pg_dsn: str) -> None:
    assert current_revision(pg_dsn, migrated["pgqueue"]) == HEAD_REVISION
    call_command("pgqueue_migrate", verbosity=0)  # idempotent
    # The unmanaged models' migration matches the models, whatever the schema setting.
    call_command("makemigrations", "pgqueue", "--check", "--dry-run", verbosity=0)


def test_rollback_in_atomic_leaves_nothing(migrated: dict[str, str], pg_dsn: str) -> None:
    from django.db import transaction

    from pgqueue.contrib.django.models import Job
    from tests.contrib.djshop.models import Order
    from tests.contrib.djshop.tasks import ship_order

    marker = uuid.uuid4().int % 1_000_000_000 + 1_000_000_000
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(email="bob@example.com")
        job = ship_order.defer(marker)
        # Written in Django's transaction: visible to it, not yet to anyone else.
        assert Job.objects.filter(pk=int(job), args=[marker]).exists()
        assert _jobs_seen_elsewhere(pg_dsn, migrated["pgqueue"], ship_order.name, [marker]) == 0
        raise RuntimeError("payment declined")
    assert not Order.objects.filter(pk=order.pk).exists()
    assert not Job.objects.filter(args=[marker]).exists()
    assert _jobs_seen_elsewhere(pg_dsn, migrated["pgqueue"], ship_order.name, [marker]) == 0


def test_committed_job_runs_with_pgqueue_work_burst(migrated: dict[str, str]) -> None:
    from django.db import transaction

    from pgqueue.contrib.django.models import Job
    from tests.contrib.djshop.models import Order
    from tests.contrib.djshop.tasks import ship_order

    with transaction.atomic():
        order = Order.objects.create(email="ada@example.com")
        job = ship_order.defer(order.pk)
    assert Job.objects.get(pk=int(job)).state == "queued"
    call_command("pgqueue_work", "--burst", "-q", "shop", verbosity=0)
    order.refresh_from_db()
    assert order.shipped
    done = Job.objects.get(pk=int(job))
    assert done.state == "succeeded"
    assert done.result == {"order": order.pk, "email": "ada@example.com"}


def test_each_job_gets_a_clean_connection(migrated: dict[str, str]) -> None:
    """close_old_connections around each job: with CONN_MAX_AGE 0 (Django's default) the
    connection a job used is closed after it, so the next job on the same thread opens
    its own, as the next request of a Django view would."""
    from pgqueue.contrib.django.models import Job
    from tests.contrib.djshop.tasks import backend_pid

    jobs = [backend_pid.defer(), backend_pid.defer()]  # outside atomic(): committed at once
    call_command("pgqueue_work", "--burst", "-q", "shop_pids", "-c", "1", verbosity=0)
    results = [Job.objects.get(pk=int(j)) for j in jobs]
    assert [r.state for r in results] == ["succeeded", "succeeded"]
    assert results[0].result != results[1].result


def test_burst_with_a_failed_job_is_a_command_error(migrated: dict[str, str]) -> None:
    from tests.contrib.djshop.tasks import always_fails

    job = always_fails.defer()
    with pytest.raises(CommandError, match=r"burst: 0 succeeded, 1 failed") as caught:
        call_command("pgqueue_work", "--burst", "-q", "shop_fail", verbosity=0)
    assert caught.value.returncode == 1
    assert job.state() == "failed"


def test_admin_pages_are_read_only(migrated: dict[str, str]) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.contrib.djshop.tasks import ship_order

    job = ship_order.options(queue="shop_admin").defer(424242)
    user = User.objects.create_superuser(f"admin{uuid.uuid4().hex[:6]}", "a@example.com", "pw")
    client = Client()
    client.force_login(user)
    page = client.get("/admin/pgqueue/job/")
    assert page.status_code == 200
    assert ship_order.name in page.content.decode()
    link = f"/admin/pgqueue/job/{int(job)}/change/"
    assert link in page.content.decode()
    filtered = client.get("/admin/pgqueue/job/?state__exact=queued&queue=shop_admin")
    assert filtered.status_code == 200
    assert link in filtered.content.decode()
    other = client.get("/admin/pgqueue/job/?queue=shop_fail")
    assert other.status_code == 200
    assert link not in other.content.decode()
    detail = client.get(f"/admin/pgqueue/job/{int(job)}/change/")
    assert detail.status_code == 200
    assert "424242" in detail.content.decode()
    queues = client.get("/admin/pgqueue/queuestat/")
    assert queues.status_code == 200
    assert "shop_admin" in queues.content.decode()
    assert client.get("/admin/pgqueue/job/add/").status_code == 403
    assert client.post(f"/admin/pgqueue/job/{int(job)}/delete/").status_code == 403
    assert client.post(f"/admin/pgqueue/job/{int(job)}/change/", {}).status_code == 403


def test_settings_are_checked(migrated: dict[str, str]) -> None:
    from django.test import override_settings

    from pgqueue.contrib.django import conf, dsn_from_django

    with (
        override_settings(PGQUEUE={"SHEMA": "x"}),
        pytest.raises(ConfigurationError, match="SHEMA"),
    ):
        conf.read()
    with (
        override_settings(PGQUEUE={"QUEUES": "shop"}),
        pytest.raises(ConfigurationError, match="QUEUES"),
    ):
        conf.read()
    with pytest.raises(ConfigurationError, match=r"not in settings\.DATABASES"):
        dsn_from_django("replica")
    dsn = conninfo_to_dict(dsn_from_django())
    assert dsn["application_name"] == migrated["appname"]
    assert "search_path" in str(dsn["options"])


def test_app_setting_must_be_a_django_app(migrated: dict[str, str]) -> None:
    from django.test import override_settings

    from pgqueue import App
    from pgqueue.contrib.django import DjangoApp, get_app
    from pgqueue.contrib.django.application import reset

    with pytest.raises(ConfigurationError, match="no dsn"):
        DjangoApp(dsn="postgresql://elsewhere/db")
    plain = App("postgresql://elsewhere/db", schema=migrated["pgqueue"])
    reset()
    try:
        with (
            override_settings(PGQUEUE={"APP": plain}),
            pytest.raises(
                ConfigurationError, match=r"must be a pgqueue\.contrib\.django\.DjangoApp"
            ),
        ):
            get_app()
        with (
            override_settings(PGQUEUE={"APP": "no.such.module:app"}),
            pytest.raises(ConfigurationError, match="cannot be imported"),
        ):
            get_app()
    finally:
        reset()  # the next get_app() builds the settings' app again
