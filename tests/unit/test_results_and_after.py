"""No database: Job handles, the result exceptions, after= validation, result encoding."""

from __future__ import annotations

import copy
import json
import math
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from pgqueue import App, InvalidJobError, Job, JobCancelled, JobFailed, JobSpec, ResultTimeout
from pgqueue.jobspec import MAX_DEPENDENCIES, check_after, to_params
from pgqueue.results import Outcome, jobs_of, settle
from pgqueue.worker.runner import Claimed, _result_json, result_not_json

APP = App("postgresql://nobody@localhost/none", schema="unit")


def test_a_job_handle_is_its_id() -> None:
    job = Job(42, APP)
    assert job == 42 and isinstance(job, int) and isinstance(job, Job)
    assert (str(job), repr(job), f"{job}", json.dumps([job]), hash(job)) == (
        "42",
        "42",
        "42",
        "[42]",
        hash(42),
    )
    assert job.id == 42 and type(job.id) is int and job.app is APP
    assert copy.copy(job) is job and copy.deepcopy(job) is job
    assert type(pickle.loads(pickle.dumps(job))) is int
    assert type(job + 1) is int
    with pytest.raises(AttributeError):
        job.extra = 1  # type: ignore[attr-defined]
    handles = jobs_of(APP, [1, 2, 3])
    assert handles == [1, 2, 3] and all(type(h) is type(job) for h in handles)
    assert APP.job(7) == 7 and isinstance(APP.job(7), Job)
    other = App("postgresql://nobody@localhost/none", schema="other")
    assert Job(42, other).app is other and job.app is APP


def _outcome(state: str, result: Any = None, error: dict[str, Any] | None = None) -> Outcome:
    return Outcome(state, result, error, "evals.run", 2, 5, False)


def test_settle_returns_or_raises() -> None:
    assert settle(1, _outcome("succeeded", {"a": 1})) == {"a": 1}
    error = {"kind": "error", "type": "builtins.ValueError", "message": "ValueError: bad"}
    with pytest.raises(JobFailed) as failed:
        settle(1, _outcome("failed", error=error))
    assert str(failed.value) == "job 1 (evals.run) failed: ValueError: bad"
    assert not isinstance(failed.value, JobCancelled)
    lost = {"kind": "lost", "message": "lease lost: the worker stopped renewing it"}
    with pytest.raises(JobFailed, match=r"failed: \[lost\] lease lost"):
        settle(1, _outcome("failed", error=lost))
    with pytest.raises(JobFailed, match=r"failed$"):
        settle(1, _outcome("failed"))
    dep = {"kind": "dependency", "message": "a job it depends on failed or was cancelled"}
    with pytest.raises(JobCancelled, match=r"cancelled: \[dependency\] a job it depends"):
        settle(1, _outcome("cancelled", error=dep))
    # an older attempt's error is not why a queued job was cancelled
    with pytest.raises(JobCancelled) as cancelled:
        settle(1, _outcome("cancelled", error=error))
    assert str(cancelled.value) == "job 1 (evals.run) cancelled" and cancelled.value.kind is None


def test_exceptions_pickle() -> None:
    for exc in (
        JobFailed(3, "t", "failed", "error", "builtins.KeyError", "KeyError: 'x'"),
        JobCancelled(4, "t", "cancelled", "dependency", None, "a job it depends on failed"),
        ResultTimeout(5, "running", "job 5 (t) did not finish within 1s: it is running"),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.job_id == exc.job_id and back.state == exc.state
    assert isinstance(ResultTimeout(1, "queued", "m"), TimeoutError)


def test_after_is_checked() -> None:
    assert check_after([3, 1, 3, Job(2, APP)]) == [3, 1, 2]
    assert check_after(5) == [5] and check_after(Job(6, APP)) == [6]
    assert check_after([]) is None and check_after(iter(())) is None
    assert check_after(range(1, 4)) == [1, 2, 3]
    for bad, says in [
        ("12", "list of job ids"),
        (b"12", "list of job ids"),
        ({1: 2}, "list of job ids"),
        (1.5, "list of job ids"),
        ([0], "got 0"),
        ([-3], "got -3"),
        ([True], "got True"),
        ([2.0], "got 2.0"),
        (["7"], "got '7'"),
        ([None], "got None"),
        ([2**63], "got 9223372036854775808"),
    ]:
        with pytest.raises(InvalidJobError, match=says):
            check_after(bad)
    with pytest.raises(InvalidJobError, match=f"more than {MAX_DEPENDENCIES}"):
        check_after(range(1, MAX_DEPENDENCIES + 2))
    params = to_params(JobSpec("t", after=[9, 8]))
    assert params["depends_on"] == [9, 8]
    assert to_params(JobSpec("t"))["depends_on"] is None


def _claimed() -> Claimed:
    return Claimed(1, "default", "t", [], {}, 1, 5, 0, 0, 0)


@pytest.mark.parametrize(
    "value, says",
    [
        ({1, 2}, "(set) is not JSON (Object of type set is not JSON serializable)"),
        (datetime(2026, 1, 1, tzinfo=UTC), "(datetime) is not JSON"),
        (math.nan, "(float) is not JSON (NaN and infinity are not JSON)"),
        ({"x": [math.inf]}, "NaN and infinity are not JSON"),
        ("a\x00b", "NUL character"),
        (object(), "(object) is not JSON"),
    ],
)
def test_a_result_that_is_not_json_fails_the_job_for_good(value: Any, says: str) -> None:
    assert _result_json(value) is None
    outcome = result_not_json(_claimed(), value, 0.0)
    assert (outcome.ok, outcome.final) == (False, True)
    assert outcome.error is not None and outcome.error["kind"] == "result_not_json"
    assert says in outcome.error["message"]
    assert "return plain str/int/float/bool/None/list/dict values" in outcome.error["message"]


def test_json_results_encode() -> None:
    assert _result_json(None) == "null"
    assert _result_json({"a": [1, 2.5, None, True, "é"]}) == '{"a":[1,2.5,null,true,"\\u00e9"]}'
    assert _result_json({1: "x"}) == '{"1":"x"}'  # keys become strings, as json does
    assert _result_json("a\\u0000b") == '"a\\\\u0000b"'  # only looks like a NUL
