"""Maintenance services run inside every worker: reaper, pruner, vacuumer (one worker at a
time where it matters) and the scheduler of periodic tasks (one job per tick)."""

from .dependencies import DependencySweep
from .pruner import Pruner, Retention
from .reaper import Reaper
from .scheduler import Scheduler
from .vacuumer import Vacuumer

__all__ = ["DependencySweep", "Pruner", "Reaper", "Retention", "Scheduler", "Vacuumer"]
