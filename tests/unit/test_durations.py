"""The one duration parser of the command line (pgqueue/cli/durations.py)."""

from __future__ import annotations

import click
import pytest

from pgqueue.cli.durations import (
    FORMAT,
    MAX_SECONDS,
    Duration,
    Rate,
    Seconds,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0", 0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("30s", 30),
        ("15m", 900),
        ("12h", 43_200),
        ("7d", 604_800),
        ("2w", 1_209_600),
        ("250ms", 0.25),
        ("1.5h", 5_400),
        ("1h30m", 5_400),
        ("1h 30m", 5_400),
        ("1d12h", 129_600),
        ("1m5s", 65),
        ("2m500ms", 120.5),
        (" 7D ", 604_800),
        ("10 m", 600),
        ("1W2D3H4M5S6MS", 788_645.006),
    ],
)
def test_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text, "--x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "7x",
        "-1d",
        "-5",
        "d",
        "h30m",
        "7 days",
        "1e5",
        "inf",
        "nan",
        "30m1h",  # largest unit first
        "1h1h",  # each unit once
        "1h30",  # a unit on every part
        "1,5h",
        "5 s x",
        "0x10",
        "1..5s",
    ],
)
def test_refused_with_the_one_message(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text, "--keep-succeeded")
    assert str(info.value) == f"invalid duration {text!r} for --keep-succeeded: {FORMAT}"


def test_the_message_names_the_forms() -> None:
    for form in ("seconds (90", "30s", "5m", "1h30m", "7d"):
        assert form in FORMAT


def test_longer_than_100_years_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("5300w")
    assert parse_duration("5200w") < MAX_SECONDS


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (86_400, "1d"), (604_800, "1w"), (3_600, "1h"), (90, "90s"), (0.01, "10ms"),
     (0.2, "200ms"), (1.25, "1250ms")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _convert(kind: click.ParamType, value: object) -> object:
    command = click.Command("c", params=[click.Option(["--opt"], type=kind)])
    ctx = click.Context(command)
    return kind.convert(value, command.params[0], ctx)


def test_duration_type_converts_and_remembers_the_spelling() -> None:
    value = _convert(Duration(), "1h30m")
    assert isinstance(value, Seconds) and isinstance(value, float)
    assert (value, value.text) == (5_400.0, "1h30m")
    assert _convert(Duration(), 30.0) == 30.0  # a default given in seconds


def test_duration_type_bad_value_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(click.BadParameter) as info:
        _convert(Duration(), "soon")
    assert info.value.exit_code == 2
    info.value.show()
    err = capsys.readouterr().err
    assert err == f"Error: invalid duration 'soon' for --opt: {FORMAT}\n"


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        (Duration(1, 86_400), "0.5", "--opt 0.5 is out of range: use at least 1s, at most 1d"),
        (Duration(1, 86_400), "2d", "--opt 2d is out of range: use at least 1s, at most 1d"),
        (Duration(0, low_open=True), "0s", "--opt 0s is out of range: use more than 0s"),
    ],
)
def test_duration_type_range(kind: Duration, value: str, says: str) -> None:
    with pytest.raises(click.BadParameter) as info:
        _convert(kind, value)
    assert info.value.format_message() == says


def test_duration_type_none_only_when_allowed() -> None:
    assert _convert(Duration(allow_none=True), " None ") == "none"
    with pytest.raises(click.BadParameter, match="invalid duration 'none'"):
        _convert(Duration(), "none")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10/s", (10, 1.0)), ("100/1m", (100, 60.0)), ("5/2.5s", (5, 2.5)), ("3/.5s", (3, 0.5)),
     ("7/1h30m", (7, 5_400.0)), ("none", (None, None))],
)  # fmt: skip
def test_rate_type(value: str, expected: tuple[int | None, float | None]) -> None:
    assert _convert(Rate(), value) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("10", "invalid rate '10' for --opt"),
        ("10/", "invalid rate '10/' for --opt"),
        ("x/s", "invalid rate 'x/s' for --opt"),
        ("0/s", "invalid rate '0/s' for --opt"),
        ("10/0s", "the period must be longer than 0"),
        ("10/fortnight", f"invalid duration 'fortnight' for --opt: {FORMAT}"),
    ],
)
def test_rate_type_refuses(value: str, says: str) -> None:
    with pytest.raises(click.BadParameter) as info:
        _convert(Rate(), value)
    assert says in info.value.format_message()
    assert info.value.exit_code == 2
