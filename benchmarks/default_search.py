"""Wall time and CPU utilisation of the default search: `xgrid search` with no space argument, as a user runs it.

    python benchmarks/default_search.py [--cpus N] [--keep]

Runs `xgrid search` (the embedded micro-benchmark, local Ray, MLflow on SQLite) as a subprocess in a fresh
temporary folder and measures its wall time from the process start to its exit. Then, from what the search left:

- phase seconds: the `seconds` every phase measured around its own work (`run_phase`, from the load of the encoder
  to the last report), i.e. every stage-1 training (its checkpoint's `xgrid_phase.json` in the store), every
  stage-2 trial and every retrieval evaluation (the `seconds` metric of each trial in results.json);
- CPU utilisation = sum of phase seconds / (CPUs x wall). CPUs is `os.cpu_count()` (what `xgrid search` gives
  local Ray) unless --cpus says otherwise. A phase runs on one thread (one CPU), so 100% means every CPU ran a
  phase for the whole wall time.

Where the rest goes, from the progress lines (`[  12 s] ...`, elapsed seconds since the CLI started its search)
and from the MLflow runs' start and end times (the driver's view of each stage-1 job, trial and evaluation):
the process start before the search's first line, stage 1's wall and its mean busy slots, each target's wall and
the gap before its first run, and the time after the last run ends. Goals (issue 14): wall < 5 min, utilisation
>= 90%.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_WALL_S = 300.0
GOAL_UTILISATION = 0.90
LINE = re.compile(r"^\[\s*(\d+) s\] (.*)$")


def phase_seconds(out: Path) -> dict[str, list[float]]:
    """Each phase's own `seconds`, by kind: stage-1 trainings (store), stage-2 trials and retrieval evaluations
    (results.json)."""
    found: dict[str, list[float]] = {"stage1": [], "stage2": [], "retrieval": []}
    for summary in sorted((out / "store").rglob("xgrid_phase.json")):
        seconds = json.loads(summary.read_text()).get("seconds")
        if seconds is not None:
            found["stage1"].append(float(seconds))
    results = sorted(out.rglob("results.json"))
    if not results:
        sys.exit(f"no results.json under {out}")
    for trial in json.loads(results[-1].read_text())["trials"]:
        seconds = trial["metrics"].get("seconds")
        if seconds is None:
            continue
        kind = "retrieval" if trial["cell"].get("target_format") == "retrieval" else "stage2"
        found[kind].append(float(seconds))
    return found


def mlflow_runs(out: Path) -> list[dict]:
    """(stage, start, end) of every MLflow run but the parent, in seconds since the epoch (empty if unreadable)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return []
    dbs = sorted(out.rglob("*.db"))
    db = next((d for d in dbs if "mlflow" in d.name), None)
    if db is None:
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{db.absolute()}")
    rows = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=50_000):
            stage = run.data.tags.get("stage")
            if stage in (None, "search") or run.info.end_time is None:
                continue
            rows.append({"stage": stage, "start": run.info.start_time / 1000, "end": run.info.end_time / 1000,
                         "target": run.data.tags.get("target", "")})
    return rows


def busy_profile(runs: list[dict], t0: float) -> list[tuple[str, float, float, float]]:
    """(group, start, end, mean runs open) relative to the process start, per group of runs (stage 1, each
    target), from the driver's open/close times of the runs."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault("stage 1" if run["stage"] == "stage1" else run["target"] or run["stage"], []).append(run)
    profile = []
    for name, rs in groups.items():
        start, end = min(r["start"] for r in rs), max(r["end"] for r in rs)
        open_seconds = sum(r["end"] - r["start"] for r in rs)
        profile.append((name, start - t0, end - t0, open_seconds / max(end - start, 1e-9)))
    return sorted(profile, key=lambda p: p[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs the search runs on (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="xgrid-default-search-"))
    env = {**os.environ, "COLUMNS": "200"}
    print(f"running xgrid search in {out} on {args.cpus} CPUs (load average before: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
    t0_epoch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, cwd=out)
    wall = time.perf_counter() - t0
    load_after = os.getloadavg()
    log = proc.stdout + proc.stderr
    (out / "search.log").write_text(log)
    if proc.returncode:
        print(log[-4000:])
        sys.exit(f"xgrid search exited {proc.returncode}; log: {out / 'search.log'}")
    seconds = phase_seconds(out)
    total = sum(sum(v) for v in seconds.values())
    utilisation = total / (args.cpus * wall)
    print(f"load average after: {', '.join(f'{x:.2f}' for x in load_after)}")
    for kind, values in seconds.items():
        if values:
            print(f"  {kind:>9}: {len(values):3d} phases, {sum(values):7.1f} s (median {statistics.median(values):.2f}, "
                  f"min {min(values):.2f}, max {max(values):.2f})")
    print(f"phase seconds {total:.1f} s; wall {wall:.1f} s x {args.cpus} CPUs = {wall * args.cpus:.1f} CPU-s")
    print(f"wall {wall:.1f} s (goal < {GOAL_WALL_S:.0f} s: {'met' if wall < GOAL_WALL_S else 'NOT met'})")
    print(f"CPU utilisation {100 * utilisation:.1f}% (goal >= {100 * GOAL_UTILISATION:.0f}%: "
          f"{'met' if utilisation >= GOAL_UTILISATION else 'NOT met'})")

    # Where the rest goes.
    lines = [(float(m.group(1)), m.group(2)) for m in map(LINE.match, log.splitlines()) if m]
    profile = busy_profile(mlflow_runs(out), t0_epoch)
    if profile:
        print("timeline (seconds since the process started; runs open = mean number of runs the driver had open):")
        previous = 0.0
        for name, start, end, busy in profile:
            print(f"  {name:>12}: {start:6.1f} -> {end:6.1f} s ({end - start:5.1f} s), gap before {start - previous:5.1f} s, "
                  f"runs open {busy:.2f} of {args.cpus}")
            previous = max(previous, end)
        print(f"  after the last run: {wall - previous:.1f} s (results, compare-ready files, Ray shutdown)")
    if lines:
        print(f"first progress line at +{lines[0][0]:.0f} s of the search's clock: {lines[0][1][:100]}")
        done = re.search(r"done in (\d+) s", log)
        if done:
            print(f"search's own clock: done in {done.group(1)} s; process wall {wall:.0f} s "
                  f"(interpreter, imports, Ray start and stop outside it: {wall - float(done.group(1)):.0f} s)")
    if args.keep:
        print(f"kept: {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
