"""How a search runs (where, with what resources, who listens): the CLI flags, kept apart from what it searches
(the space, already resolved into a plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xgrid.events import SearchListener


@dataclass(frozen=True)
class SearchOptions:
    output_root: Path = Path("xgrid_runs")
    store_root: str | None = None  # default: <output_root>/store
    address: str | None = None  # join a running Ray cluster (auto, or a head's address); None: start local Ray
    ray_init: dict[str, Any] = field(default_factory=dict)  # extra ray.init kwargs (tests pass num_cpus)
    # Who hears the search's events, in order: the live progress, a tracker (`xgrid.tracking.TrackingListener`),
    # anything else. None of them is built here: the caller decides what is tracked and where.
    listeners: tuple[SearchListener, ...] = ()

    @property
    def store(self) -> str:
        return self.store_root or str((self.output_root / "store").absolute())

