"""``pgqueue enqueue``."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import InvalidJobError
from .common import Settings
from .durations import Duration


def _parse(value: str | None, kind: type, option: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidJobError(
            f"{option} is not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except RecursionError:
        raise InvalidJobError(
            f"{option} nests too deep to decode (see the max_depth limit in the README)"
        ) from None
    if not isinstance(parsed, kind):
        want = "array, e.g. '[1, 2]'" if kind is list else 'object, e.g. \'{"to": "a@b.c"}\''
        raise InvalidJobError(f"{option} must be a JSON {want}")
    return parsed


@click.command()
@click.argument("task")
@click.option(
    "--args", "args_json", metavar="JSON_ARRAY", help="Positional arguments, a JSON array."
)
@click.option(
    "--kwargs", "kwargs_json", metavar="JSON_OBJECT", help="Keyword arguments, a JSON object."
)
@click.option("--queue", help="Queue name (default: the task's, else 'default').")
@click.option("--priority", type=int, help="Higher runs first (-32768..32767, default 0).")
@click.option(
    "--delay",
    type=Duration(),
    metavar="DURATION",
    help="Run no sooner than this from now: seconds (90) or 30s, 5m, 1h30m, 7d.",
)
@click.option("--max-attempts", type=int, help="Attempts before the job is failed (default 20).")
@click.option(
    "--dedupe-key", metavar="KEY", help="No new job while one with this key is queued or running."
)
@click.option(
    "--unique-for",
    type=Duration(),
    metavar="DURATION",
    help="With --dedupe-key: also none while one finished less than DURATION ago.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="With --dedupe-key: a queued holder of the key takes these arguments.",
)
@click.option("--group-key", metavar="KEY", help="Fairness group (a tenant): round-robin claims.")
@click.option(
    "--after",
    metavar="ID",
    type=int,
    multiple=True,
    help="Run only after job ID succeeded (repeatable); cancelled if one fails.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": N} instead of the bare id.')
@click.pass_obj
def enqueue(
    settings: Settings,
    task: str,
    args_json: str | None,
    kwargs_json: str | None,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    max_attempts: int | None,
    dedupe_key: str | None,
    unique_for: float | None,
    replace: bool,
    group_key: str | None,
    after: tuple[int, ...],
    as_json: bool,
) -> None:
    """Enqueue one job of TASK and print its id.

    With --app the task name is checked against your registered tasks;
    without it any well-formed name is accepted (the worker decides).

    \b
    Examples:
      pgqueue enqueue emails.send --kwargs '{"to": "a@b.c"}'
      pgqueue enqueue reports.build --args '[2026, 11]' --queue reports --delay 60
      pgqueue enqueue sync.account --kwargs '{"id": 7}' --dedupe-key account-7
      pgqueue enqueue sync.account --dedupe-key account-7 --unique-for 300
      pgqueue enqueue reports.build --group-key tenant-42
      pgqueue enqueue evals.summarize --after 41 --after 42
    """
    args = _parse(args_json, list, "--args")
    kwargs = _parse(kwargs_json, dict, "--kwargs")
    app = settings.app(strict_tasks=bool(settings.app_path))
    job_id = app.enqueue(
        task,
        args,
        kwargs,
        queue=queue,
        priority=priority,
        delay=delay,
        max_attempts=max_attempts,
        dedupe_key=dedupe_key,
        unique_for=unique_for,
        replace=replace,
        group_key=group_key,
        after=list(after) or None,
    )
    if as_json:
        click.echo(json.dumps({"id": job_id}))
    else:
        click.echo(job_id)
