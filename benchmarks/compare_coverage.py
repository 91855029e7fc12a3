"""Coverage and power of the interval `xgrid compare` prints, over whole simulated grids.

    python benchmarks/compare_coverage.py [--searches 2000]

Prints one row per design (tasks per kind, 3 seeds, task sd, seed sd): coverage of 0 under the null (nominal
0.95), the false-positive rate, and the power to exclude 0 for planted differences of 2, 4 and 8 points. Each
simulated grid goes through compare's path (`xgrid.statistics.simulate.coverage`). Exits 1 if a null coverage falls
below 0.93.
"""

import argparse
import itertools
import sys

from xgrid.statistics.simulate import Design, coverage
from xgrid.planning.power import expected_half_width


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--searches", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'design':>24} {'null cov':>9} {'false +':>8} {'half-w':>7} {'predicted':>9} "
          f"{'power +2':>9} {'power +4':>9} {'power +8':>9}")
    worst = 1.0
    for n, task_sd, seed_sd in itertools.product((2, 3, 5, 10), (1.0, 3.0), (0.5, 1.5)):
        null = coverage(Design(n, n, 3, task_sd, seed_sd), args.searches, seed=1)
        power = [coverage(Design(n, n, 3, task_sd, seed_sd, effect=e), args.searches, seed=2)["excludes_zero"]
                 for e in (2.0, 4.0, 8.0)]
        worst = min(worst, null["coverage"])
        label = f"{n}+{n} sd {task_sd:g}/{seed_sd:g}"
        print(f"{label:>24} {null['coverage']:9.3f} {null['excludes_zero']:8.3f} {null['half_width']:7.2f} "
              f"{expected_half_width(n, n, 3, task_sd, seed_sd):9.2f} " + " ".join(f"{p:9.3f}" for p in power))
    print(f"lowest null coverage: {worst:.3f} (nominal 0.95, required >= 0.93)")
    return 0 if worst >= 0.93 else 1


if __name__ == "__main__":
    sys.exit(main())
