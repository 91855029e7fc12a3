"""Fixed overhead of a stage-2 trial: the same tiny trial as a bare PyTorch loop, and through xgrid's stage 2.

    python benchmarks/trial_overhead.py [--trials 8] [--ray-train-trials 3]

Bare: `run_phase` with a LocalContext in this process (model load, featurizing, training, evaluation).
xgrid inline: a real search (local Ray with 2 CPUs, Tuner + Optuna, MLflow on SQLite) of one cell with N trials
run one at a time; a trial's wall time is measured in the driver from trial start to trial end.
xgrid ray_train: the same with `trial_backend: ray_train` (a TorchTrainer per trial, 1 worker).
Overhead = median trial wall time - median bare time. Prints the medians and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from xgrid.config import parse_space
from xgrid.models.tiny import ensure_tiny_model
from xgrid.events import SearchListener
from xgrid.planning.plan import build_plan
from xgrid.running.requests import stage2_request
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search
from xgrid.search.trial import run_inline
from xgrid.tasks import default_registry

SPACE = {
    "name": "overhead",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "target_training": {"learning_rate": 0.0015, "epochs": 4, "max_length": 64},
    "search": {"scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


class TrialClock(SearchListener):
    def __init__(self):
        self.started: dict[str, float] = {}
        self.walls: list[float] = []
        self.phase: list[float] = []

    def trial_started(self, record):
        self.started[record.trial_id] = time.perf_counter()

    def trial_finished(self, record):
        self.walls.append(time.perf_counter() - self.started[record.trial_id])
        self.phase.append(record.metrics.get("seconds", float("nan")))


def searched(trials: int, backend: str, root: Path, registry) -> TrialClock:
    space = parse_space(SPACE | {"search": SPACE["search"] | {"trials_per_cell": trials},
                                 "target_training": SPACE["target_training"] | {"learning_rate": {"values": [0.0015]}},
                                 "resources": SPACE["resources"] | {"trial_backend": backend}}, registry)
    clock = TrialClock()
    t0 = time.perf_counter()
    # No tracker: this measures the search machinery alone.
    run_search(build_plan(space, registry), SearchOptions(output_root=root / backend, store_root=str(root / "store"),
                                                          ray_init={"num_cpus": 2}, listeners=(clock,)))
    print(f"  {backend}: whole search {time.perf_counter() - t0:.1f} s for {trials} trials")
    return clock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--ray-train-trials", type=int, default=3)
    args = parser.parse_args()
    registry = default_registry()
    root = Path(tempfile.mkdtemp(prefix="xgrid-overhead-"))
    space = parse_space(SPACE, registry)
    base = str(ensure_tiny_model(root / "store", space.microbench_seed))
    (cell,) = build_plan(space, registry).cells
    request = stage2_request(cell, 0.0015, space, base)
    bare = []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        run_inline(request, space.resources)
        bare.append(time.perf_counter() - t0)
    b = statistics.median(bare)
    print(f"bare loop: median {b:.2f} s over {len(bare)} runs (min {min(bare):.2f}, max {max(bare):.2f})")
    for backend, n in (("inline", args.trials), ("ray_train", args.ray_train_trials)):
        if n <= 0:
            continue
        clock = searched(n, backend, root, registry)
        w, p = statistics.median(clock.walls), statistics.median(clock.phase)
        # The first trial also starts the trial actor (imports); reuse makes later ones cheaper.
        later = statistics.median(clock.walls[1:]) if len(clock.walls) > 1 else w
        print(f"xgrid {backend}: median trial wall {w:.2f} s (after the first: {later:.2f} s), phase inside "
              f"{p:.2f} s; overhead vs bare {w - b:+.2f} s per trial (after the first: {later - b:+.2f} s); "
              f"ratio {w / b:.2f}x")


if __name__ == "__main__":
    main()
