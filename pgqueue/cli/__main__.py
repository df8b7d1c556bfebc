"""``python -m pgqueue.cli`` runs the command line (used by ``work --processes``)."""

from . import main

main()
