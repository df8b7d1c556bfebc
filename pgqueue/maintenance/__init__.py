"""Maintenance services run inside every worker, one worker at a time (advisory lock)."""

from .pruner import Pruner, Retention
from .reaper import Reaper
from .vacuumer import Vacuumer

__all__ = ["Pruner", "Reaper", "Retention", "Vacuumer"]
