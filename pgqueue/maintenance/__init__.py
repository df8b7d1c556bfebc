"""Maintenance services run inside every worker, one worker at a time (advisory lock)."""

from .reaper import Reaper

__all__ = ["Reaper"]
