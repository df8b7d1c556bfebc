"""The crash tests share the worker tests' fixtures: ``qapp`` (an App on the test's
schema), ``effects_table`` and ``workers`` (real `pgqueue work` processes, all killed at
the end of the test)."""

from tests.worker.conftest import effects_table, qapp, workers

__all__ = ["effects_table", "qapp", "workers"]
