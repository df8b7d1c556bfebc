"""``pgqueue bench``."""

from __future__ import annotations

import click

from .common import Settings, emit_json, table


@click.command()
@click.option(
    "--runs",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Runs of every workload; the table shows medians.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="Worker concurrency for the drain workloads (W3, W5).",
)
@click.option(
    "--prefetch",
    type=click.IntRange(0, 100_000),
    default=500,
    show_default=True,
    help="Worker --prefetch for the drain workloads (W3, W5).",
)
@click.option(
    "--backlog",
    type=click.IntRange(0, 100_000_000),
    default=0,
    show_default=True,
    is_flag=False,
    flag_value=1_000_000,
    help="Add W5: drain again with this many jobs queued behind (--backlog alone means 1,000,000).",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(["W1", "W2", "W3", "W3Q", "W3M", "W3O", "W4", "W4F", "W5", "W6A", "W6T"]),
    help="Run only these workloads (repeatable).",
)
@click.option(
    "--scale",
    type=click.FloatRange(0.001, 100),
    default=1.0,
    show_default=True,
    help="Multiply every job count (0.1 for a quick look).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def bench(
    settings: Settings,
    runs: int,
    concurrency: int,
    prefetch: int,
    backlog: int,
    only: tuple[str, ...],
    scale: float,
    as_json: bool,
) -> None:
    """Measure pgqueue on your database, in a throwaway schema it drops afterwards.

    \b
    W1  bulk enqueue: 20,000 jobs through enqueue_many            jobs/s
    W2  single enqueue: 2,000 jobs, one call and commit each     jobs/s
    W3  drain: 20,000 queued no-op jobs, one worker process      jobs/s
        (the worker logs at its default level, info, to a file)
    W3Q W3 with the worker at --log-level warning (only with --only)
    W3M W3 with the worker serving Prometheus metrics (only with --only)
    W3O W3M plus OpenTelemetry tracing (only with --only): every span sampled, or
        as OTEL_TRACES_SAMPLER/OTEL_TRACES_SAMPLER_ARG say
    W4  wake latency: idle worker, 200 jobs ~20 ms apart         p50/p99 ms
    W4F W4 with the opt-in --fast-claims (labelled separately)  p50/p99 ms
    W5  drain again with a backlog queued behind (--backlog)     jobs/s
    W6A concurrent producers: 4,000 single enqueues, 64 tasks    jobs/s
    W6T the same from 16 threads                                 jobs/s

    \b
    Examples:
      pgqueue bench
      pgqueue --dsn postgresql://localhost/app bench --runs 5 --backlog
      pgqueue bench --only W3 --concurrency 200 --json
      pgqueue bench --only W3 --only W3Q --runs 5    # what per-job log lines cost
      pgqueue bench --only W3 --only W3M --only W3O  # what metrics and tracing cost
    """
    from ..bench import BenchConfig, run

    cfg = BenchConfig(
        runs=runs,
        concurrency=concurrency,
        prefetch=prefetch,
        backlog=backlog,
        bulk_jobs=max(1, int(20_000 * scale)),
        single_jobs=max(1, int(2_000 * scale)),
        drain_jobs=max(1, int(20_000 * scale)),
        latency_jobs=max(2, int(200 * scale)),
    )
    if only:
        cfg.only = list(only)
        if "W5" in only and not backlog:
            cfg.backlog = 1_000_000
    elif backlog:
        cfg.only.append("W5")
    results = run(settings.dsn, cfg, lambda line: click.echo(line, err=True))
    if as_json:
        emit_json(results)
        return
    rows = []
    for key, entry in results.items():
        for metric, value in entry["median"].items():
            per_run = ", ".join(f"{r[metric]:,.1f}" for r in entry["runs"])
            rows.append([key, entry["title"], metric, f"{value:,.1f}", per_run])
    click.echo(table(["", "WORKLOAD", "METRIC", "MEDIAN", "RUNS"], rows))
