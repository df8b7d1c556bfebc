"""The application's own tables and engines (SQLAlchemy 2), from PGQUEUE_DSN."""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import Boolean, Text, create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DSN = os.environ["PGQUEUE_DSN"]
# The DSN's parts as psycopg's keyword arguments: works for a URI and "host=... dbname=...".
_parts = conninfo_to_dict(DSN)
engine = create_engine("postgresql+psycopg://", connect_args=_parts)
async_engine = create_async_engine("postgresql+psycopg://", connect_args=_parts)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "example_outbox_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(Text)
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
