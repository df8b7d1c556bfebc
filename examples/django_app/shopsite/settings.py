"""The example project's settings. The database comes from PGQUEUE_DSN (run.py sets it);
a real project writes its DATABASES as it always has: pgqueue reads them."""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ["PGQUEUE_DSN"])
_schema = os.environ.get("PGQUEUE_SCHEMA", "pgqueue")

SECRET_KEY = "example-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", ""),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        # The example keeps its own tables in a schema of their own, so it can share a
        # database with anything (run.py creates it).
        "OPTIONS": {"options": f"-c search_path={_schema}_site"},
        # Each request in one transaction: a job deferred in a view commits with it.
        "ATOMIC_REQUESTS": True,
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "pgqueue.contrib.django",
    "orders",
]

PGQUEUE = {
    "SCHEMA": _schema,
    "QUEUES": ["emails"],
    "WORKER": {"concurrency": 4},
}

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
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
]
