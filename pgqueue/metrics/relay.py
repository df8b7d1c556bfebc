"""``pgqueue work --processes N --metrics-port P``: one ``/metrics`` for N processes.

Each child serves its own metrics on a free port of 127.0.0.1 and writes the port to a
file the supervisor names (``PGQUEUE_METRICS_PORT_FILE``). The supervisor's server, on
P, scrapes every live child when it is scraped and serves their series with a
``process`` label (the child's slot, 0..N-1). Series are not summed across processes:
a restarted child starts its counters from zero, which Prometheus's ``rate()`` handles
per series but a sum would see as counters going backwards; ``sum by (queue)`` in a
query gives the totals. A child that does not answer is left out of that scrape, and
``pgqueue_processes_scraped`` says how many answered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any

from ..errors import ConfigurationError
from . import require
from .worker import PORT_FILE_ENV

log = logging.getLogger("pgqueue.metrics")

SCRAPE_TIMEOUT = 5.0


class Relay:
    """The supervisor's side: port files per slot, and the collector that reads them."""

    def __init__(self, processes: int) -> None:
        require()
        self.processes = processes
        self.dir = tempfile.mkdtemp(prefix="pgqueue-metrics-")
        self._server: Any = None

    def env(self, slot: int) -> dict[str, str]:
        """The environment variable a child of ``slot`` gets."""
        return {PORT_FILE_ENV: self.port_file(slot)}

    def port_file(self, slot: int) -> str:
        return os.path.join(self.dir, f"slot-{slot}")

    def forget(self, slot: int) -> None:
        """A child died: its port is no longer valid (a new one writes its own)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.port_file(slot))

    def serve(self, port: int, host: str) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(self)  # type: ignore[arg-type]
        try:
            self._server, _ = start_http_server(port, host, registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        log.info("metrics of %d processes on http://%s:%d/metrics", self.processes, host, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for slot in range(self.processes):
            self.forget(slot)
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)

    def _child_text(self, slot: int) -> str | None:
        try:
            with open(self.port_file(slot)) as f:
                port = int(f.read().strip())
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
                return str(resp.read().decode("utf-8"))
        except (OSError, ValueError):
            return None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.metrics_core import Metric
        from prometheus_client.parser import text_string_to_metric_families

        merged: dict[str, Metric] = {}
        answered = 0
        for slot in range(self.processes):
            text = self._child_text(slot)
            if text is None:
                continue
            answered += 1
            for family in text_string_to_metric_families(text):
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    out.samples.append(
                        sample._replace(labels={**sample.labels, "process": str(slot)})
                    )
        yield from merged.values()
        yield GaugeMetricFamily(
            "pgqueue_processes_scraped",
            "Worker processes whose metrics this scrape could read",
            value=answered,
        )
