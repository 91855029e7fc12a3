"""How long is left, said one way everywhere: the live progress and `xgrid status` both estimate a stage or a
target as (units left + running) x median unit duration / the units that run at once, and print durations
alike (`45s`, `3m 05s`, `2h 10m`)."""

from __future__ import annotations

import math
import statistics
from typing import Iterable


def eta_seconds(remaining: int, durations: Iterable[float], concurrency: int) -> float | None:
    """Seconds until `remaining` units (queued or running) are done; None while no unit has finished (nothing
    to go on). With fewer units left than run at once, they run side by side: one median duration."""
    if remaining <= 0:
        return 0.0
    finished = list(durations)
    if not finished:
        return None
    return remaining * float(statistics.median(finished)) / max(1, min(concurrency, remaining))


def duration(seconds: float | None, unknown: str = "unknown") -> str:
    if seconds is None or not math.isfinite(seconds):
        return unknown
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"
