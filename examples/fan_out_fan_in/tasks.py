"""The example's app: score documents in parallel (fan-out), then summarize (fan-in)."""

from __future__ import annotations

from pgqueue import App

app = App()  # PGQUEUE_DSN / PGQUEUE_SCHEMA, else the embedded server

DOCUMENTS = {
    1: "the quick brown fox",
    2: "jumps over the lazy dog",
    3: "a job queue inside postgres",
    4: "jobs are rows",
    5: "nothing acknowledged is lost",
}


@app.task(queue="docs", max_attempts=1)  # one attempt: a missing document is not transient
def score(doc_id: int) -> dict[str, int]:
    text = DOCUMENTS.get(doc_id)
    if text is None:
        raise LookupError(f"no document {doc_id}")
    return {"doc": doc_id, "words": len(text.split())}


@app.task(queue="docs")
def summarize(job_ids: list[int]) -> dict[str, int]:
    # Runs only once every job in after= succeeded: their results are there to read.
    results = [app.job(i).result(timeout=0) for i in job_ids]
    return {"documents": len(results), "words": sum(r["words"] for r in results)}


def fan_out_fan_in(doc_ids: list[int]) -> tuple[list[int], int]:
    """One scoring job per document and a summary that waits for all of them; returns
    (the scoring job ids, the summary's id)."""
    parts = app.enqueue_many(score.spec(d) for d in doc_ids)
    total = summarize.options(after=parts).defer([int(p) for p in parts])
    return [int(p) for p in parts], int(total)
