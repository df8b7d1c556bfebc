"""Prometheus metrics (``pgqueue[metrics]``, prometheus-client).

- ``worker``: what one worker process does, served on ``/metrics`` by
  ``pgqueue work --metrics-port N``. Counted in plain Python on the worker's loop
  (a few dict and list operations per job, through the ``on_claimed`` and
  ``on_finished`` hooks) and turned into metric families only when scraped.
- ``relay``: ``--processes N`` with ``--metrics-port``: the supervisor serves one
  ``/metrics`` with every child's series, labelled ``process`` (its slot).
- ``fleet``: ``pgqueue metrics serve``, the whole queue as the database sees it (the
  ``queue_stats`` view and the workers table), read at scrape time.
"""

from __future__ import annotations

from ..errors import ConfigurationError


def require() -> None:
    """Raise ``ConfigurationError`` with the fix if prometheus-client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "metrics need prometheus-client: pip install 'pgqueue[metrics]'"
        ) from None
