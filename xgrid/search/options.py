"""How a search runs (where, with what resources): the CLI flags, kept apart from what it searches (the space)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xgrid.config import Resources, SearchSpace


@dataclass(frozen=True)
class SearchOptions:
    output_root: Path = Path("xgrid_runs")
    store_root: str | None = None  # default: <output_root>/store
    address: str | None = None  # join a running Ray cluster (ray://host:10001 or auto); None: start local Ray
    tracking_uri: str | None = None  # MLflow; default: sqlite under output_root
    experiment: str | None = None  # MLflow experiment; default: the space's name
    ray_init: dict[str, Any] = field(default_factory=dict)  # extra ray.init kwargs (tests pass num_cpus)
    tracking: bool = True  # MLflow; off only for benchmarks that measure the search machinery alone
    # CLI overrides of the space's resources block (None: keep the space's value).
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> str:
        return self.store_root or str((self.output_root / "store").absolute())


def effective_space(space: SearchSpace, options: SearchOptions) -> SearchSpace:
    """The space with CLI resource overrides applied, validated again so an override cannot bypass checks."""
    overrides = {k: v for k, v in options.overrides.items() if v is not None}
    if not overrides:
        return space
    resources = Resources.model_validate(space.resources.model_dump() | overrides)
    return space.model_copy(update={"resources": resources})


def uses_ray_train(resources: Resources) -> bool:
    """`auto`: a single CPU worker runs in the trial's own process (no TorchTrainer start-up, see README);
    several workers, GPUs or FSDP go through a TorchTrainer."""
    if resources.trial_backend != "auto":
        return resources.trial_backend == "ray_train"
    return resources.workers_per_trial > 1 or resources.gpus_per_worker > 0 or resources.strategy == "fsdp"
