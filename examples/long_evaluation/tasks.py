"""A long evaluation: many steps, a checkpoint after each, progress for whoever watches,
and the final score written in the same transaction that marks the job done."""

from __future__ import annotations

import time

import psycopg

from pgqueue import App, JobContext

app = App()
STEP_SECONDS = 0.3


def score_step(run_id: int, step: int) -> float:
    """Stands for an hour of GPU time; here a sleep and a number."""
    time.sleep(STEP_SECONDS)
    return (run_id * 31 + step * 7) % 100 / 100


@app.task(bind=True, max_attempts=5)
def evaluate(ctx: JobContext, run_id: int, n_steps: int) -> dict[str, float]:
    state = ctx.checkpoint_state or {"next": 0, "scores": []}  # None on a first run
    if state["next"]:
        print(f"attempt {ctx.attempt}: resuming at step {state['next'] + 1}", flush=True)
    for step in range(state["next"], n_steps):
        value = score_step(run_id, step)
        with psycopg.connect(app.dsn, autocommit=True) as log:  # a trace of what ran
            log.execute("INSERT INTO example_eval_steps VALUES (%s, %s)", (run_id, step))
        state["scores"].append(value)
        state["next"] = step + 1
        ctx.checkpoint(state)  # durable now: a crash after this resumes at step + 1
        ctx.progress(step + 1, n_steps, f"scored step {step + 1}")
    mean = sum(state["scores"]) / n_steps
    with ctx.transaction() as tx:  # commits with the job's success, or not at all
        tx.execute("INSERT INTO example_eval_results VALUES (%s, %s)", (run_id, mean))
    return {"mean": round(mean, 4)}
