"""Typed arguments (pgqueue.codec): encoding at enqueue, decoding as the worker does."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pgqueue import InvalidJobError, register_type
from pgqueue.codec import TAG
from pgqueue.jobspec import encode_arguments, encode_items
from pgqueue.worker.decode import decode_rows
from pgqueue.worker.runner import Claimed

VALUES: list[Any] = [
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(2026, 1, 2, 3, 4, 5),  # naive stays naive
    date(2026, 2, 28),
    time(23, 59, 1, 5),
    timedelta(days=-3, seconds=5, microseconds=7),
    Decimal("1.10"),
    Decimal("-12345678901234567890.000000000001"),
    b"\x00\xffbytes",
]


# A claimed row after its first ten columns: checkpoint, headers, queue wait.
REST = (None, None, 0.0)


def as_stored(text: str) -> str:
    """What jsonb::text gives back: keys reordered, spaces after ':' and ','."""
    return json.dumps(json.loads(text))


def claimed(args: str, kwargs: str) -> Claimed:
    jobs, poison = decode_rows([(1, "default", "t", as_stored(args), as_stored(kwargs),
                                 1, 20, 0, 0, 0, *REST)])  # fmt: skip
    assert not poison, poison[0].error
    return jobs[0]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_type_round_trips_with_its_type(value: Any) -> None:
    args, kwargs = encode_arguments("t", [value, [value]], {"v": value, "d": {"x": value}})
    job = claimed(args, kwargs)
    assert job.args == [value, [value]] and job.kwargs == {"v": value, "d": {"x": value}}
    assert type(job.args[0]) is type(value) and type(job.kwargs["d"]["x"]) is type(value)
    if isinstance(value, datetime | time):
        assert job.args[0].tzinfo == value.tzinfo


def test_the_encoding_is_documented_json() -> None:
    args, _ = encode_arguments("t", [uuid.UUID(int=1), Decimal("2.50"), date(2026, 1, 2)], {})
    assert json.loads(args) == [
        {TAG: "uuid", "v": "00000000-0000-0000-0000-000000000001"},
        {TAG: "decimal", "v": "2.50"},
        {TAG: "date", "v": "2026-01-02"},
    ]


def test_plain_json_is_unchanged() -> None:
    assert encode_arguments("t", [1, "a", None], {"x": [1.5, True]}) == (
        '[1,"a",null]',
        '{"x":[1.5,true]}',
    )
    assert claimed('[1,"a"]', '{"x":{"y":1}}').kwargs == {"x": {"y": 1}}


def test_typed_values_in_a_batch() -> None:
    items = [{"id": uuid.UUID(int=n), "at": date(2026, 1, n)} for n in range(1, 4)]
    encoded = encode_items("t", items)
    assert [claimed(a, k).kwargs for a, k in encoded] == items


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


def test_an_apps_own_type() -> None:
    register_type(
        Money,
        "test.money",
        lambda m: [str(m.amount), m.currency],
        lambda v: Money(Decimal(v[0]), v[1]),
    )
    price = Money(Decimal("9.99"), "EUR")
    args, kwargs = encode_arguments("t", [price], {"prices": [price, price]})
    job = claimed(args, kwargs)
    assert job.args == [price] and job.kwargs == {"prices": [price, price]}


def test_what_is_still_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(InvalidJobError, match=r"argument 0 .* not JSON .*register_type"):
        encode_arguments("t", [Opaque()], {})
    with pytest.raises(InvalidJobError, match=r"argument 'when' .*set"):
        encode_arguments("t", [], {"when": {1, 2}})
    # the reserved key: a dict of the caller's that is not a valid tagged value
    with pytest.raises(InvalidJobError, match="reserved key"):
        encode_arguments("t", [{TAG: "uuid", "v": "x", "extra": 1}], {})
    with pytest.raises(InvalidJobError, match="typed value 'uuid'"):
        encode_arguments("t", [{TAG: "uuid", "v": "not a uuid"}], {})
    with pytest.raises(InvalidJobError, match="unknown typed value 'nope'"):
        encode_items("t", [{"a": {TAG: "nope", "v": 1}}])
    with pytest.raises(InvalidJobError, match="reserved"):
        encode_items("t", [{TAG: "uuid", "v": str(uuid.UUID(int=1))}] * 2)
    with pytest.raises(InvalidJobError, match="NUL"):
        encode_arguments("t", [b"ok", "\x00"], {})


def test_a_tag_the_worker_does_not_know_fails_that_job_alone() -> None:
    good = (1, "default", "t", "[1]", "{}", 1, 20, 0, 0, 0, *REST)
    bad = (2, "default", "t", '[{"v": 1, "__pgqueue__": "unregistered"}]', "{}", 1, 20, 0, 0, 0,
           *REST)  # fmt: skip
    wrong = (3, "default", "t", '[{"v": "x", "__pgqueue__": "uuid"}]', "{}", 1, 20, 0, 0, 0,
             *REST)  # fmt: skip
    jobs, poison = decode_rows([good, bad, wrong])
    assert [j.id for j in jobs] == [1]
    assert [(o.job.id, o.final, (o.error or {})["kind"]) for o in poison] == [
        (2, True, "undecodable"),
        (3, True, "undecodable"),
    ]
    assert "unknown typed value 'unregistered'" in (poison[0].error or {})["message"]
    assert "typed value 'uuid'" in (poison[1].error or {})["message"]
