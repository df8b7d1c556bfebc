"""The CLI's pure helpers: '…' cuts, 80-column tables, JSON of dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from pgqueue.cli.common import clip, emit_json, fitted_table, seconds_since


def test_clip() -> None:
    assert clip("short", 10) == "short"
    assert clip("exactly10!", 10) == "exactly10!"
    assert clip("eleven chars", 10) == "eleven ch…"
    assert clip("a\nb\tc   d", 20) == "a b c d"


def test_fitted_table_fits_and_keeps_headers() -> None:
    rows = [[123456, "q" * 63, "t" * 200, "failed", "x " * 300]]
    out = fitted_table(["ID", "QUEUE", "TASK", "STATE", "ERROR"], rows, {1: 8, 2: 12, 4: 10})
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split() == ["ID", "QUEUE", "TASK", "STATE", "ERROR"]
    assert lines[1].startswith("123456  ") and lines[1].count("…") == 3
    # nothing to cut: the plain table
    small = fitted_table(["A", "B"], [[1, "x"]], {1: 1})
    assert small == "A  B\n1  x"


def test_fitted_table_stops_at_the_minimum() -> None:
    out = fitted_table(["WIDE"], [["w" * 200]], {0: 90})
    assert len(out.splitlines()[1]) == 90


def test_json_dates_are_iso_and_numerics_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    at = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
    emit_json({"at": at, "age": Decimal("1.250"), "span": timedelta(minutes=2)})
    data = json.loads(capsys.readouterr().out)
    assert data == {"at": "2026-11-26T10:00:05+00:00", "age": 1.25, "span": 120.0}


def test_seconds_since() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert seconds_since(None) is None
    assert seconds_since(now - timedelta(seconds=90), now) == 90
    assert seconds_since(now + timedelta(seconds=5), now) == 0  # clocks apart: never negative
