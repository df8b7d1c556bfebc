"""The FastAPI app: the same endpoint with a sync Session and with an AsyncSession. The
order and its confirmation job are written in one transaction: the job is the outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from models import Order, async_engine, engine
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from tasks import send_confirmation


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await async_engine.dispose()


api = FastAPI(lifespan=lifespan)


class OrderIn(BaseModel):
    email: str
    card: str = "ok"


def session() -> Iterator[Session]:
    with Session(engine) as s:
        yield s


async def async_session() -> AsyncIterator[AsyncSession]:
    async with AsyncSession(async_engine) as s:
        yield s


@api.post("/orders", status_code=201)
def create_order(body: OrderIn, db: Annotated[Session, Depends(session)]) -> dict[str, int]:
    order = Order(email=body.email)
    db.add(order)
    db.flush()  # the order's id
    order_id = order.id
    job = send_confirmation.options(connection=db).defer(order_id)  # same transaction
    if body.card == "declined":
        db.rollback()  # the order and the job both go
        raise HTTPException(402, "payment declined")
    db.commit()  # both, at once: a worker can only see the job once the order is there
    return {"order": order_id, "job": int(job)}


@api.post("/async/orders", status_code=201)
async def create_order_async(
    body: OrderIn, db: Annotated[AsyncSession, Depends(async_session)]
) -> dict[str, int]:
    order = Order(email=body.email)
    db.add(order)
    await db.flush()
    order_id = order.id
    job = await send_confirmation.options(connection=db).defer_async(order_id)
    if body.card == "declined":
        await db.rollback()
        raise HTTPException(402, "payment declined")
    await db.commit()
    return {"order": order_id, "job": int(job)}
