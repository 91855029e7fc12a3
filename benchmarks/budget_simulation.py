"""The budgeted search's sequential design on simulated grids: false-direction rate under the null, power and the
share of the fixed design (every target at max_seeds) it spends, through the same `decide_look` the search calls.

    python benchmarks/budget_simulation.py [--grids 1000]
"""

from __future__ import annotations

import argparse

from xgrid.statistics.sequential import SequentialDesign, simulate_budget
from xgrid.statistics.simulate import Design

SCENARIOS = [  # (tasks per kind, task sd, seed sd, looks: first seeds, per round, max seeds, spending, half-width)
    (4, 1.5, 1.5, 2, 2, 4, "pocock", 4.0),  # the shipped microbench-budget
    (4, 2.0, 1.0, 2, 1, 6, "pocock", 2.0),
    (4, 2.0, 1.0, 2, 1, 6, "obrien_fleming", 2.0),
    (8, 2.0, 1.0, 2, 1, 6, "pocock", 2.0),
    (10, 1.0, 1.0, 3, 1, 6, "pocock", 2.0),
]
TARGETS = 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grids", type=int, default=1000)
    args = parser.parse_args()
    print(f"{TARGETS} targets per grid, alpha 0.05, {args.grids} grids per row")
    print(f"{'design':<54} {'effect':>7} {'false dir.':>10} {'power':>6} {'spent':>6}")
    for n, task_sd, seed_sd, first, per_round, max_seeds, spending, hw in SCENARIOS:
        design = SequentialDesign(first, per_round, max_seeds, 0.05, spending, hw, TARGETS)
        grid = Design(n, n, task_sd=task_sd, seed_sd=seed_sd)
        label = (f"{n}+{n} tasks, sd {task_sd:g}/{seed_sd:g}, seeds {'/'.join(map(str, design.looks()))}, "
                 f"{spending}, hw {hw:g}")
        for effect in sorted({0.0, 2 * hw, 4.0}):
            r = simulate_budget(grid, design, args.grids, seed=1, effects=[effect] * TARGETS)
            power = "-" if effect == 0 else f"{r['power']:.2f}"
            print(f"{label:<54} {effect:>7g} {r['false_direction_rate']:>10.3f} {power:>6} {r['spent_share']:>6.2f}")


if __name__ == "__main__":
    main()
