"""Does the tiny model recover the micro-benchmark's planted effect? (Syntactic intermediates should help the
tagging target more than semantic ones; semantic ones should help pair classification more.)

Runs every cell of a space as plain three-phase runs (no Ray: this measures the science, not the service) at
the space's middle learning rate, then prints per target the gain over the `none` baseline by intermediate
task and the syntactic vs semantic means over tasks and seeds.

    python benchmarks/planted_effect.py [SPACE] [--seeds 0 1 2] [--targets T ...] [--intermediates I ...]
        [--store /tmp/xgrid-bench-store]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from statistics import mean, stdev

from xgrid.config import load_space
from xgrid.planning.plan import build_plan
from xgrid.running.local import run_cell
from xgrid.spaces import resolve_space
from xgrid.tasks import default_registry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("space", nargs="?", help="a space file or shipped name (default: the micro-benchmark)")
    parser.add_argument("--seeds", type=int, nargs="*")
    parser.add_argument("--store", default="/tmp/xgrid-bench-store")
    parser.add_argument("--targets", nargs="*")
    parser.add_argument("--intermediates", nargs="*", help="a subset of the space's (the `none` baseline is kept)")
    args = parser.parse_args()
    registry = default_registry()
    space = load_space(resolve_space(args.space), registry)
    if args.seeds:
        space = space.model_copy(update={"seeds": args.seeds})
    if args.targets:
        space = space.model_copy(update={"targets": args.targets})
    if args.intermediates:
        space = space.model_copy(update={"intermediates": ["none", *(i for i in args.intermediates if i != "none")]})
    plan = build_plan(space, registry)
    jobs = {j.key: j for j in plan.jobs}
    lr = space.target_training.learning_rate.fixed_value()
    scores: dict[tuple[str, str, int], float] = {}
    kinds: dict[str, str] = {}
    started = time.perf_counter()
    for cell in sorted(plan.cells, key=lambda c: (c.seed, c.intermediate, c.target)):
        t0 = time.perf_counter()
        stage1, result = run_cell(cell, jobs[cell.stage1_key], lr, space, args.store)
        score = result.flat_metrics()[f"{result.metric}.avg_xling"]
        scores[(cell.target, cell.intermediate, cell.seed)] = score
        kinds[cell.intermediate] = cell.kind
        print(f"{cell.target:11s} {cell.intermediate:10s} seed {cell.seed}: {result.metric} zero-shot avg "
              f"{score:5.1f}  en {result.scores()['en'] if 'en' in result.scores() else float('nan'):5.1f}  "
              f"({time.perf_counter() - t0:.1f} s{', stage 1 trained' if stage1.trained else ''})", flush=True)
    print(f"\nall cells: {time.perf_counter() - started:.0f} s, lr {lr:.2g}\n")
    print("gain over `none` (zero-shot average without English), mean over seeds:")
    for target in space.targets:
        by_kind = defaultdict(list)
        for intermediate, kind in kinds.items():
            if kind == "none":
                continue
            gains = [scores[(target, intermediate, s)] - scores[(target, "none", s)] for s in space.seeds]
            by_kind[kind].append(mean(gains))
            spread = f" sd {stdev(gains):.1f}" if len(gains) > 1 else ""
            print(f"  {target:11s} {intermediate:10s} ({kind:9s}): {mean(gains):+6.2f}{spread}")
        summary = "  ".join(f"{k} {mean(v):+.2f}" for k, v in sorted(by_kind.items()))
        diff = mean(by_kind["syntactic"]) - mean(by_kind["semantic"]) if {"syntactic", "semantic"} <= set(by_kind) else float("nan")
        print(f"  {target:11s} => {summary}   syntactic - semantic = {diff:+.2f}\n")


if __name__ == "__main__":
    main()
