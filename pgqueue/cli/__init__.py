"""The ``pgqueue`` command line: click commands, one module per group."""

from __future__ import annotations

import sys

from .root import cli


def main() -> None:
    """Entry point of the ``pgqueue`` script."""
    cli(prog_name="pgqueue")


if __name__ == "__main__":  # pragma: no cover
    main()
    sys.exit(0)
