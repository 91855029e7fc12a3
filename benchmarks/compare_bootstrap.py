"""Time xgrid compare's hierarchical bootstrap on a synthetic grid (10 + 10 tasks x 5 seeds x 4 languages,
2000 replicates): median, min and max of several runs. Figures only; no test times anything.

    python benchmarks/compare_bootstrap.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from xgrid.compare.stats import compute_gains, hierarchical_bootstrap


def synthetic_runs(n_tasks: int = 10, n_seeds: int = 5, languages: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tasks = [("none", "none")] + [(f"{k[:3]}{i}", k) for k in ("syntactic", "semantic") for i in range(n_tasks)]
    rows = [{"base_model": "m", "target": "xnli", "target_group": "classification", "policy": "english_dev",
             "intermediate": name, "kind": kind, "seed": s, "language": f"l{lang}",
             "score": 70 + rng.normal(0, 2)}
            for name, kind in tasks for s in range(n_seeds) for lang in range(languages)]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    gains = compute_gains(synthetic_runs())
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        hierarchical_bootstrap(gains, n_boot=args.n_boot, seed=7)
        times.append(time.perf_counter() - t0)
    print(f"hierarchical bootstrap, 10+10 tasks x 5 seeds, {args.n_boot} replicates: median "
          f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}) over {args.runs} runs")


if __name__ == "__main__":
    main()
