"""Does the embedded micro-benchmark let the method work? Prints figures; exits nonzero when it does not.

Trains, with `xgrid.training.phase.run_phase` directly (no Ray), under the default space's settings:

1. each intermediate task's stage 1 once (seed 0): English dev against the task's chance score;
2. the `none` baseline on each trained target once (seed 0): English score against chance + 15 points;
3. with ``--stage2``: one stage-2 pass per (intermediate task, planted target), and the mean zero-shot score
   (xa, xb, xc) per kind minus `none`, so the sign of the planted effect can be read off (syntactic helps
   mb_udpos, semantic helps mb_xnli; see `xgrid.data.microbench`).

    python benchmarks/microbench_learns.py                 # requirements 1 and 2 (a few minutes on 2 CPUs)
    python benchmarks/microbench_learns.py --stage2        # plus the planted effect (longer)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

from xgrid.config import load_space
from xgrid.planning.plan import build_plan
from xgrid.running.requests import base_model_source, stage1_request, stage2_request
from xgrid.spaces import resolve_space
from xgrid.tasks import default_registry
from xgrid.training.phase import run_phase

# How far above chance the `none` baseline must be on English (points).
BASELINE_MARGIN = 15.0
# How far above chance an intermediate task must be on English dev to count as having learned (points).
INTERMEDIATE_MARGIN = 15.0
ZERO_SHOT = ("xa", "xb", "xc")
# Which kind the planted effect favours on which target; mb_xquad has no planted effect.
PLANTED = {"mb_udpos": "syntactic", "mb_xnli": "semantic"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("space", nargs="?", default=None, help="a space file (default: the shipped default)")
    parser.add_argument("--lr", type=float, default=0.0016,
                        help="stage-2 learning rate (default: about the geometric middle of the default range)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage2", action="store_true", help="also one stage-2 pass per (task, target)")
    parser.add_argument("--only", nargs="*", default=None, help="restrict to these intermediate tasks")
    return parser.parse_args(argv)


def seed_jobs_and_cells(space, registry, seed: int):
    plan = build_plan(space, registry)
    jobs = {j.intermediate: j for j in plan.jobs if j.seed == seed}
    cells = {(c.intermediate, c.target): c for c in plan.cells if c.seed == seed}
    return jobs, cells


def train_stage1(job, space, store: Path) -> tuple[str, float]:
    """The encoder folder and its English dev score."""
    base = base_model_source(job.base_model, space, store)
    if not job.trains:
        return base, float("nan")
    out = store / "stage1" / job.intermediate
    result = run_phase(dataclasses.replace(stage1_request(job, space, base), output_dir=str(out)))
    print(f"  ({job.intermediate}: {result.seconds:.0f} s)", file=sys.stderr, flush=True)
    return str(out), result.final["english_dev"]["en"][result.metric]


def fine_tune(cell, space, encoder: str, lr: float) -> dict[str, float]:
    result = run_phase(stage2_request(cell, lr, space, encoder))
    print(f"  ({cell.intermediate} -> {cell.target}: {result.seconds:.0f} s)", file=sys.stderr, flush=True)
    return result.scores()


def row(name: str, kind: str, score: float, chance: float, floor: float) -> tuple[str, bool]:
    ok = score >= floor
    return f"{name:<12} {kind:<10} {score:7.1f} {chance:7.1f} {floor:7.1f}  {'ok' if ok else 'FAIL'}", ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    registry = default_registry()
    space = load_space(resolve_space(args.space), registry)
    jobs, cells = seed_jobs_and_cells(space, registry, args.seed)
    names = [n for n in space.intermediates if n != "none" and (args.only is None or n in args.only)]
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="microbench-learns-") as tmp:
        store = Path(tmp)
        print(f"{'stage 1':<12} {'kind':<10} {'en dev':>7} {'chance':>7} {'floor':>7}")
        encoders = {"none": train_stage1(jobs["none"], space, store)[0]}
        for name in names:
            task = registry.get(name)
            encoders[name], score = train_stage1(jobs[name], space, store)
            line, ok = row(name, task.kind, score, task.chance, task.chance + INTERMEDIATE_MARGIN)
            print(line, flush=True)
            failures += [] if ok else [f"stage 1 {name}"]
        print(f"\n{'none on':<12} {'metric':<10} {'en':>7} {'chance':>7} {'floor':>7}")
        baseline: dict[str, dict[str, float]] = {}
        for target in space.targets:
            task = registry.get(target)
            cell = cells[("none", target)]
            if not cell.trains:
                continue
            baseline[target] = fine_tune(cell, space, encoders["none"], args.lr)
            line, ok = row(target, task.metric, baseline[target]["en"], task.chance,
                           task.chance + BASELINE_MARGIN)
            print(line, flush=True)
            failures += [] if ok else [f"none on {target}"]
        if args.stage2:
            failures += planted_effect(names, registry, space, cells, encoders, baseline, args.lr)
    print("\nall requirements met" if not failures else f"\nFAILED: {', '.join(failures)}")
    return 1 if failures else 0


def zero_shot(scores: dict[str, float]) -> float:
    return statistics.mean(scores[lang] for lang in ZERO_SHOT)


def planted_effect(names, registry, space, cells, encoders, baseline, lr: float) -> list[str]:
    """Per target: each task's zero-shot mean minus `none`, and syntactic minus semantic."""
    failures: list[str] = []
    targets = [t for t in ("mb_udpos", "mb_xnli", "mb_xquad") if t in baseline]
    print(f"\nstage 2, zero-shot ({', '.join(ZERO_SHOT)}) minus none, lr {lr}")
    print(f"{'task':<12} {'kind':<10} " + " ".join(f"{t:>9}" for t in targets))
    deltas: dict[str, dict[str, list[float]]] = {t: {"syntactic": [], "semantic": []} for t in targets}
    for name in names:
        kind = registry.get(name).kind
        cols = []
        for target in targets:
            delta = zero_shot(fine_tune(cells[(name, target)], space, encoders[name], lr)) - zero_shot(
                baseline[target])
            deltas[target][kind].append(delta)
            cols.append(f"{delta:9.1f}")
        print(f"{name:<12} {kind:<10} " + " ".join(cols), flush=True)
    print(f"\n{'target':<12} {'syn-sem':>8} {'sd syn':>7} {'sd sem':>7}  planted")
    effects = {}
    for target in targets:
        syn, sem = deltas[target]["syntactic"], deltas[target]["semantic"]
        effects[target] = effect = statistics.mean(syn) - statistics.mean(sem)
        spread = [statistics.stdev(x) if len(x) > 1 else float("nan") for x in (syn, sem)]
        want = PLANTED.get(target)
        ok = want is None or (effect > 0) == (want == "syntactic")
        print(f"{target:<12} {effect:8.1f} {spread[0]:7.1f} {spread[1]:7.1f}  {want or '-'}"
              f"{'' if ok else '  FAIL (wrong sign)'}")
        failures += [] if ok else [f"planted effect on {target}"]
    # A target with no planted effect must show less than either planted one (one seed: no interval here).
    planted_sizes = [abs(effects[t]) for t in PLANTED if t in effects]
    for target in (t for t in effects if t not in PLANTED):
        if planted_sizes and abs(effects[target]) >= min(planted_sizes):
            failures.append(f"{target} (no planted effect) differs by kind as much as a planted target")
    return failures


if __name__ == "__main__":
    sys.exit(main())
