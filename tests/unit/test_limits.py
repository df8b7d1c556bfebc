"""The validation contract in Python (no database): every refusal is an
``InvalidJobError`` naming the limit; the limits are configurable on App up to the
table's ceilings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgqueue import App, ConfigurationError, InvalidJobError, JobSpec
from pgqueue.jobspec import encode_items, to_params
from pgqueue.limits import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_DEPTH_CEILING,
    MAX_PAYLOAD_BYTES_CEILING,
    Limits,
    depth_of,
)


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


FAR = datetime.now(UTC) + timedelta(days=365 * 101)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (JobSpec("t", "abc"), "list or tuple, got str"),  # type: ignore[arg-type]
        (JobSpec("t", {"a": 1}), "list or tuple, got dict"),  # type: ignore[arg-type]
        (JobSpec("t", 5), "list or tuple, got int"),  # type: ignore[arg-type]
        (JobSpec("t", {1, 2}), "list or tuple, got set"),  # type: ignore[arg-type]
        (JobSpec("t", (x for x in [1])), "got generator"),  # type: ignore[arg-type]
        (JobSpec("t", kwargs=[1, 2]), "kwargs"),  # type: ignore[arg-type]
        (JobSpec("t", kwargs={"a\x00": 1}), "NUL"),
        (JobSpec("t", kwargs={"a": {"b\x00": 1}}), "NUL"),
        (JobSpec("t", ["\ud800"]), "lone surrogate"),
        (JobSpec("t", kwargs={"\udfff": 1}), "lone surrogate"),
        (JobSpec("t", [nested(10_000)]), "nested deeper than 64"),
        (JobSpec("t", nested(DEFAULT_MAX_DEPTH + 1)), "nested deeper than 64"),
        (JobSpec("t", ["x" * DEFAULT_MAX_PAYLOAD_BYTES]), "bytes of JSON"),
        (JobSpec("t", ["é" * (DEFAULT_MAX_PAYLOAD_BYTES // 2)]), "bytes of JSON"),
        (JobSpec("t\n"), "invalid task name"),
        (JobSpec("t", queue="q\n"), "invalid queue name"),
        (JobSpec("t", dedupe_key="k\x00"), "NUL"),
        (JobSpec("t", group_key="g\x00"), "NUL"),
        (JobSpec("t", dedupe_key="\ud800"), "lone surrogate"),
        (JobSpec("t", delay=1e300), "100 years"),
        (JobSpec("t", delay=float("inf")), "delay"),
        (JobSpec("t", run_at=FAR), "100 years"),
        (JobSpec("t", run_at=datetime(9999, 12, 31, tzinfo=UTC)), "100 years"),
        (JobSpec("t", run_at=datetime(1, 1, 1, tzinfo=UTC)), "before 1970"),
    ],
)
def test_refusals_name_the_limit(spec: JobSpec, says: str) -> None:
    with pytest.raises(InvalidJobError, match=says):
        to_params(spec)


def test_at_the_limits_is_accepted() -> None:
    p = to_params(JobSpec("t", nested(DEFAULT_MAX_DEPTH), {"k": "x" * 1000}))
    assert p["args"].count("[") == DEFAULT_MAX_DEPTH
    to_params(JobSpec("t", ["x" * (DEFAULT_MAX_PAYLOAD_BYTES - 10)]))  # 6 bytes of [""]+{}
    past = datetime(1970, 1, 2, tzinfo=UTC)
    assert to_params(JobSpec("t", run_at=past))["run_at"] == past  # a past run_at: due now


def test_the_batch_path_refuses_the_same() -> None:
    for items, says in (
        ([{"a": "\ud800"}, {"a": 1}], "item 0 .* lone surrogate"),
        ([{"a": 1}, {"a": "x" * DEFAULT_MAX_PAYLOAD_BYTES}], "item 1 .* bytes"),
        ([[1], nested(DEFAULT_MAX_DEPTH + 1)], "item 1 .* nested deeper"),
        ([{"a\x00": 1}, {"b": 2}], "item 0 .* NUL"),
        (["abc"], "item 0"),
    ):
        with pytest.raises(InvalidJobError, match=says):
            encode_items("t", items)


def test_limits_are_configurable_up_to_the_ceilings() -> None:
    app = App("postgresql://unused", max_payload_bytes=1024, max_depth=3)
    with pytest.raises(InvalidJobError, match="1024"):
        to_params(JobSpec("t", ["x" * 1024]), limits=app.limits)
    with pytest.raises(InvalidJobError, match="deeper than 3"):
        to_params(JobSpec("t", [[[[1]]]]), limits=app.limits)
    big = Limits(MAX_PAYLOAD_BYTES_CEILING, MAX_DEPTH_CEILING)
    to_params(JobSpec("t", nested(MAX_DEPTH_CEILING), {"s": "x" * 500_000}), limits=big)
    for bad in (
        {"max_payload_bytes": MAX_PAYLOAD_BYTES_CEILING + 1},
        {"max_payload_bytes": 0},
        {"max_depth": MAX_DEPTH_CEILING + 1},
        {"max_depth": True},
    ):
        with pytest.raises(ConfigurationError, match="ceiling"):
            App("postgresql://unused", **bad)


def test_depth_of_skips_brackets_in_strings() -> None:
    assert depth_of('["[[[", {"a": "]]\\"[["}]', 10) == 2
    assert depth_of("1", 10) == 0


def test_periodic_jobs_take_the_same_contract() -> None:
    app = App("postgresql://unused")
    for args in ("abc", [nested(DEFAULT_MAX_DEPTH + 1)], ["\x00"]):
        with pytest.raises(ConfigurationError, match="periodic"):

            @app.periodic(every=60, name=f"p{len(app.tasks)}", args=args)
            def job(*a: Any) -> None: ...
