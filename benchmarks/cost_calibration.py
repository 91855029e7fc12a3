"""Where the CPU constants of `xgrid.planning.cost` come from: a real `xgrid search`, timed phase by phase.

    python benchmarks/cost_calibration.py [SPACE] [--log FILE]

Runs `xgrid search SPACE` (default: the embedded micro-benchmark) in a fresh output folder, as a user does
(local Ray, MLflow on SQLite), with its log to a file; or, with --log, reads the log of a search that already ran
(its progress lines carry the elapsed seconds). From the progress lines it takes the phase walls: stage 1 (every
checkpoint trained), each stage-2 target and the retrieval evaluations, and the start-up around them. It prints
them beside the dry run's estimate, and the constants that would reproduce this run:

- overhead per trial: a retrieval evaluation trains nothing, so its wall per slot is the fixed cost of a unit of
  work (start, load the encoder, evaluate, report);
- examples/s: stage 1 and stage 2 example-passes per slot-second, once that overhead is taken off;
- per-target start: the gap between one target's last trial and the next one's first (a Tuner, a study);
- start-up: the process's wall outside the search, plus the search's own set-up before stage 1 reports.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xgrid.config import load_space
from xgrid.planning.cost import estimate
from xgrid.planning.plan import build_plan
from xgrid.spaces import resolve_space
from xgrid.tasks import default_registry

LINE = re.compile(r"^\[\s*(\d+) s\] (\S+?):? (.*)$")


def phases(log: str, targets: list[str]) -> dict[str, float]:
    """Elapsed seconds at which each phase ended, from the progress lines (printed on change, at most every 5 s)."""
    ends: dict[str, float] = {}
    first: dict[str, float] = {}
    for line in log.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t, what = float(m.group(1)), m.group(2)
        if what == "stage":
            ends["stage 1"] = t
        elif what in targets:
            first.setdefault(what, t)
            ends[what] = t
    done = re.search(r"done in (\d+) s", log)
    ends["done"] = float(done.group(1)) if done else max(ends.values())
    return {**ends, **{f"{t} first": v for t, v in first.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("space", nargs="?")
    parser.add_argument("--log", help="the log of a search that already ran (its process wall: --wall)")
    parser.add_argument("--wall", type=float, help="with --log: the process's wall seconds, if known")
    args = parser.parse_args()
    registry = default_registry()
    plan = build_plan(load_space(resolve_space(args.space), registry), registry)
    space = plan.space
    if args.log:
        log, wall = Path(args.log).read_text(), args.wall
    else:
        out = Path(tempfile.mkdtemp(prefix="xgrid-calibration-"))
        env = {**os.environ, "COLUMNS": ""}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", *([args.space] if args.space else []),
                               "--output-dir", str(out)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        (out / "log").write_text(log)
        print(f"log: {out / 'log'}")
        if proc.returncode:
            sys.exit(f"the search failed (exit {proc.returncode}); see the log")
    at = phases(log, list(space.targets))
    trained = [t for t in space.targets if plan.cells_for(t)[0].trains]
    scored = [t for t in space.targets if not plan.cells_for(t)[0].trains]
    order = sorted(trained + scored, key=lambda t: at.get(t, 0))
    previous, walls = at["stage 1"], {"stage 1": at["stage 1"]}
    gaps = []
    for target in order:
        walls[target] = at[target] - previous
        gaps.append(at[f"{target} first"] - previous)
        previous = at[target]
    walls["end"] = at["done"] - previous
    cost = estimate(plan)
    slots = max(1, min(space.resources.max_concurrent_trials, 2))
    print(f"space {space.name}: {cost.stage1_jobs} stage-1 jobs ({cost.stage1_example_passes:,} example-passes), "
          f"{cost.stage2_trials} stage-2 trials ({cost.stage2_example_passes:,}), {cost.retrieval_evals} retrieval "
          f"evaluations; {slots} slots")
    for name, seconds in walls.items():
        print(f"  {name:>12}: {seconds:6.0f} s")
    print(f"  search (done in): {at['done']:.0f} s" + (f"; process wall {wall:.0f} s" if wall else ""))
    print(f"  first report after a target's start: {', '.join(f'{g:.0f}' for g in gaps)} s")
    # The constants that reproduce this run (see the module docstring).
    per_start = sum(gaps) / len(gaps)
    overhead = max(0.0, sum(walls[t] for t in scored)) * slots / max(1, cost.retrieval_evals)
    s1_rate = cost.stage1_example_passes / max(1e-9, walls["stage 1"] * slots - overhead * cost.stage1_jobs)
    s2_wall = sum(walls[t] - per_start for t in trained)
    s2_rate = cost.stage2_example_passes / max(1e-9, s2_wall * slots - overhead * cost.stage2_trials)
    startup = (wall - at["done"] if wall else 0.0) + walls["end"]
    print(f"fitted: overhead per trial {overhead:.1f} s, stage-1 {s1_rate:.0f} examples/s, stage-2 {s2_rate:.0f} "
          f"examples/s, per-target start {per_start:.0f} s, start-up {startup:.0f} s")
    measured = wall or at["done"]
    print(f"estimate {cost.cpu_seconds:.0f} s vs measured {measured:.0f} s "
          f"({100 * (cost.cpu_seconds - measured) / measured:+.0f}%)")


if __name__ == "__main__":
    main()
