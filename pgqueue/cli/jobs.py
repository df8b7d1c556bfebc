"""``pgqueue jobs``: list, show, retry, cancel and delete jobs (a thin layer over ``app.admin``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from .common import Settings, emit_json, fitted_table, seconds_since
from .status import age


@click.group()
def jobs() -> None:
    """See and steer single jobs: list, show, retry, cancel, delete.

    \b
    Examples:
      pgqueue jobs list --state failed
      pgqueue jobs show 42
      pgqueue jobs retry --failed --queue emails
      pgqueue jobs cancel 42 43
    """


# -- list -------------------------------------------------------------------------------------


@jobs.command("list")
@click.option("--queue", metavar="QUEUE", help="Only jobs of this queue.")
@click.option(
    "--state",
    metavar="STATE",
    help="Only jobs in this state: waiting (for the jobs it runs after), queued, scheduled "
    "(queued, run_at ahead), running, succeeded, failed or cancelled.",
)
@click.option("--task", metavar="TASK", help="Only jobs of this task.")
@click.option(
    "--limit", type=int, default=50, show_default=True, help="At most this many, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_jobs(
    settings: Settings,
    queue: str | None,
    state: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first. A queued job whose run_at is still ahead shows
    'in …' (when it will run) instead of its age.

    \b
    Examples:
      pgqueue jobs list
      pgqueue jobs list --queue emails --state failed --limit 10
      pgqueue jobs list --task reports.build --json | jq '.[].id'
    """
    # arguments as stored: typed values stay tagged JSON (exact, as psql shows them)
    rows = settings.app().admin.jobs(
        queue=queue, state=state, task=task, limit=limit, decode_types=False
    )
    if as_json:
        emit_json(rows)
    elif not rows:
        click.echo("no jobs match")
    else:
        click.echo(render_list(rows))


def render_list(rows: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The jobs table; fits 80 columns (queue, task and error are cut with '…')."""
    now = now or datetime.now(UTC)
    headers = ["ID", "QUEUE", "TASK", "STATE", "ATTEMPT", "AGE/RUN AT", "LAST ERROR"]
    table_rows = [
        [
            r["id"],
            r["queue"],
            r["task"],
            _state(r),
            f"{r['attempt']}/{r['max_attempts']}",
            _when(r, now),
            r["last_error"] or "",
        ]
        for r in rows
    ]
    return fitted_table(headers, table_rows, shrink={1: 8, 2: 12, 6: 10})


def _state(row: dict[str, Any]) -> str:
    """The state; a running job's progress after it (``running 70%``, ``running 7``)."""
    progress = row.get("progress")
    if row["state"] != "running" or not progress:
        return str(row["state"])
    return f"running {progress_text(progress, short=True)}"


def progress_text(progress: dict[str, Any], short: bool = False) -> str:
    """``7/10 (70%)`` and the message; short: ``70%`` (or ``7`` without a total)."""
    done, total = progress.get("done"), progress.get("total")
    number = f"{done:g}" if isinstance(done, (int, float)) else "?"
    percent = None
    if isinstance(total, (int, float)) and total > 0 and isinstance(done, (int, float)):
        percent = f"{100 * done / total:.0f}%"
    if short:
        return percent or number
    text = f"{number}/{total:g} ({percent})" if percent else number
    return f"{text}  {progress['message']}" if progress.get("message") else text


def _when(row: dict[str, Any], now: datetime) -> str:
    run_at: datetime = row["run_at"]
    if row["state"] == "queued" and run_at > now:
        return "in " + age((run_at - now).total_seconds())
    return age(seconds_since(row["created_at"], now))


# -- show -------------------------------------------------------------------------------------


@jobs.command()
@click.argument("job_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def show(settings: Settings, job_id: int, as_json: bool) -> None:
    """Show everything about one job: arguments, state, attempts, times, every error
    with its traceback, and the result.

    \b
    Examples:
      pgqueue jobs show 42
      pgqueue jobs show 42 --json | jq '.errors[-1].traceback' -r
    """
    job = settings.app().admin.job(job_id, decode_types=False)
    if as_json:
        emit_json(job)
    else:
        click.echo(render_job(job))


_TIMES = [("created", "created_at"), ("run at", "run_at"), ("started", "started_at"),
          ("finished", "finished_at"), ("lease until", "lease_expires_at"),
          ("cancel requested", "cancel_requested_at")]  # fmt: skip


def render_job(job: dict[str, Any], now: datetime | None = None) -> str:
    """One job, for people: fields first, then each error with its traceback."""
    now = now or datetime.now(UTC)
    lines = [f"job {job['id']}: {job['task']} on queue {job['queue']}"]

    def field(name: str, value: str) -> None:
        lines.append(f"  {name}{value}" if value[:1] == "\n" else f"  {name:<17} {value}")

    def moment(value: datetime) -> str:
        text = value.isoformat(sep=" ", timespec="seconds")
        if value > now:
            return f"{text}  (in {age((value - now).total_seconds())})"
        return f"{text}  ({age(seconds_since(value, now))} ago)"

    field("state", job["state"] + ("  (cancel requested)" if job["cancel_requested_at"] else ""))
    field("attempt", f"{job['attempt']}/{job['max_attempts']}  "
                     f"(errors {job['error_count']}, lost {job['lost_count']})")  # fmt: skip
    field("priority", str(job["priority"]))
    field("dedupe key", job["dedupe_key"] or "-")
    if job.get("depends_on"):
        field("runs after", ", ".join(map(str, job["depends_on"])))
    field("worker", job["worker_id"] or "-")
    for name, key in _TIMES:
        if job[key] is not None or key in ("started_at", "finished_at"):
            field(name, "-" if job[key] is None else moment(job[key]))
    if job.get("headers"):  # around_enqueue hooks: the trace context, ...
        field("headers", _json(job["headers"]))
    field("args", _json(job["args"]))
    field("kwargs", _json(job["kwargs"]))
    if job.get("progress"):
        progress = progress_text(job["progress"])
        at = job["progress"].get("at")
        field("progress", f"{progress}  (reported {at})" if at else progress)
    if job.get("checkpoint") is not None:
        field("checkpoint", _json(job["checkpoint"]))
    field("result", "-" if job["result"] is None else _json(job["result"]))
    errors: list[dict[str, Any]] = job["errors"] or []
    lines.append("")
    lines.append(f"errors ({len(errors)})" + (":" if errors else ""))
    for n, err in enumerate(errors, 1):
        kind = err.get("kind") or "error"
        head = f"  #{n}  attempt {err.get('attempt', '?')}  {kind}"
        if err.get("at"):
            head += f"  at {err['at']}"
        if err.get("worker"):
            head += f"  worker {err['worker']}"
        lines.append(head)
        message, kind_of = err.get("message") or "", str(err.get("type") or "")
        if kind_of and not message.startswith(kind_of.rsplit(".", 1)[-1]):
            message = f"{kind_of.removeprefix('builtins.')}: {message}"  # name the exception
        lines.extend("    " + line for line in message.splitlines() or [""])
        if err.get("traceback"):
            lines.extend("    | " + line for line in str(err["traceback"]).rstrip().splitlines())
    return "\n".join(lines)


def _json(value: Any) -> str:
    """Compact JSON on one line when short, indented under the field when long."""
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= 60:
        return text
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    return "\n" + "\n".join("    " + line for line in pretty.splitlines())


# -- retry ------------------------------------------------------------------------------------


@jobs.command()
@click.argument("job_ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job instead.")
@click.option("--queue", metavar="QUEUE", help="With --failed: only this queue's jobs.")
@click.option("--task", metavar="TASK", help="With --failed: only this task's jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def retry(
    settings: Settings,
    job_ids: tuple[int, ...],
    all_failed: bool,
    queue: str | None,
    task: str | None,
    as_json: bool,
) -> None:
    """Put failed (dead-letter) or cancelled jobs back to queued with fresh attempts:
    the jobs with these ids, or with --failed every failed job (of a queue or task).
    Other jobs are left as they are and reported; an unknown id retries nothing.

    \b
    Examples:
      pgqueue jobs retry 42 43
      pgqueue jobs retry --failed
      pgqueue jobs retry --failed --queue emails --task emails.send
    """
    for wrong, why in (
        (job_ids and all_failed, "give job ids or --failed, not both"),
        (not job_ids and not all_failed, "give the ids of the jobs to retry, or --failed"),
        ((queue, task) != (None, None) and not all_failed, "--queue and --task go with --failed"),
    ):
        if wrong:
            raise click.UsageError(why)
    admin = settings.app().admin
    if all_failed:
        count = admin.retry_failed(queue=queue, task=task)
        if as_json:
            emit_json({"retried": count, "queue": queue, "task": task})
        else:
            click.echo(f"retried {count} failed job{'' if count == 1 else 's'}")
        return
    done = admin.retry(job_ids)
    out = [{"id": i, "retried": ok, "state": admin.job(i)["state"]} for i, ok in done.items()]
    if as_json:
        emit_json(out)
        return
    rows = [[o["id"], "yes" if o["retried"] else "no", _why_not(o)] for o in out]
    click.echo(fitted_table(["ID", "RETRIED", "NOTE"], rows, shrink={2: 20}))


def _why_not(outcome: dict[str, Any]) -> str:
    if outcome["retried"]:
        return ""
    if outcome["state"] in ("failed", "cancelled"):
        return "another unfinished job holds its dedupe key"
    return f"it is {outcome['state']}: only failed or cancelled jobs are retried"


# -- cancel -----------------------------------------------------------------------------------


_CANCEL_NOTES = {"cancelled": "", "cancelling": "running: its worker was asked to stop"}


@jobs.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def cancel(settings: Settings, job_ids: tuple[int, ...], as_json: bool) -> None:
    """Cancel jobs. A queued (or scheduled) job is cancelled at once; a running one is
    asked to stop ('cancelling'): its worker hears it within a second and the job ends
    cancelled, not retried. A finished job keeps its state. An unknown id cancels
    nothing.

    \b
    Examples:
      pgqueue jobs cancel 42
      pgqueue jobs cancel 42 43 --json
    """
    states = settings.app().admin.cancel(job_ids)
    if as_json:
        emit_json([{"id": i, "state": s} for i, s in states.items()])
        return
    rows = [[i, s, _CANCEL_NOTES.get(s, f"already {s}: left as it is")] for i, s in states.items()]
    click.echo(fitted_table(["ID", "STATE", "NOTE"], rows, shrink={2: 20}))


# -- delete -----------------------------------------------------------------------------------


@jobs.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, type=int, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def delete(settings: Settings, job_ids: tuple[int, ...], as_json: bool) -> None:
    """Delete finished jobs (succeeded, failed or cancelled) for good. A job that has
    not finished is left as it is (cancel it first). An unknown id deletes nothing.

    \b
    Examples:
      pgqueue jobs delete 42 43
      psql -c "SELECT pgqueue.delete_job(42)"      # the same, in SQL
    """
    states = settings.app().admin.delete(job_ids)
    if as_json:
        emit_json([{"id": i, "state": s} for i, s in states.items()])
        return
    rows = [[i, s, "" if s == "deleted" else f"{s}: not finished, left as it is"]
            for i, s in states.items()]  # fmt: skip
    click.echo(fitted_table(["ID", "STATE", "NOTE"], rows, shrink={2: 20}))
