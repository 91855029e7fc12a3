"""The search driver at scale: driver CPU and memory, and MLflow write time, per stage-2 trial, at growing plans.

    python benchmarks/driver_scale.py [--trials 500,2000,5000] [--trials-per-cell 5] [--keep DIR]

Each size is one real `run_search` (local Ray with 2 CPUs, stage 1 as Ray tasks, stage 2 through Tune + Optuna
with its study in the search folder's journal, ASHA, inline trials in reused actors), with the listeners
`xgrid search` uses: the results files, the MLflow tracker (SQLite, through the queued writer) and the live progress (its line output, to
a file). Only the phases are no-ops (`benchmarks/scale_fakes.py`: the same reports, metric names and 4 epochs as
a real stage-2 trial, a checkpoint with every epoch; stage-1 jobs commit a stub encoder), installed in every Ray
worker through `worker_process_setup_hook`. The space: 2 targets (mb_xnli, mb_udpos) x 10 intermediates (none +
9) x seeds x 1 base model, `--trials-per-cell` learning rates per cell; seeds = trials / (20 x trials per cell).

Each size runs in a fresh child process (`--child N`), which measures itself: its user+sys CPU seconds
(`resource.getrusage(RUSAGE_SELF)`: the driver only, its threads included, not Ray's workers) over the whole
search and over stage 2 alone (first stage-2 trial start to the end), its peak RSS, and the time spent inside the
MLflow writer's methods (the queued writer's thread calls them) and inside each listener. Printed per size, then
the growth from the smallest to the largest. Goal: per-trial cost flat (within 2x), < 0.2 s of driver CPU per
trial, < 1 GiB driver RSS.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import scale_fakes  # noqa: E402

INTERMEDIATES = ["none", "mb_ccg", "mb_deprel", "mb_xpos", "mb_depth", "mb_para", "mb_choice", "mb_entail",
                 "mb_semtag", "mb_chunk"]
TARGETS = ["mb_xnli", "mb_udpos"]


def space(trials: int, per_cell: int) -> dict:
    seeds = max(1, round(trials / (len(TARGETS) * len(INTERMEDIATES) * per_cell)))
    return {"name": f"driver-scale-{trials}", "base_models": [{"name": "tiny", "source": "embedded:tiny"}],
            "intermediates": INTERMEDIATES, "targets": TARGETS, "seeds": list(range(seeds)),
            "intermediate_training": {"learning_rate": 0.002, "epochs": 3, "batch_size": 32, "max_length": 64},
            "target_training": {"learning_rate": {"low": 0.0005, "high": 0.005, "log": True}, "epochs": 4,
                                "batch_size": 32, "max_length": 64},
            "search": {"trials_per_cell": per_cell, "scheduler": "asha"},
            "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "max_concurrent_trials": 2}}


class Clock:
    """Seconds and calls spent in wrapped methods, by name; safe from several threads."""

    def __init__(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)
        self._lock = threading.Lock()

    def wrap(self, obj, names, prefix=""):
        for name in names:
            method = getattr(obj, name, None)
            if method is None:
                continue

            @functools.wraps(method)
            def timed(*args, _method=method, _key=f"{prefix}{name}", **kwargs):
                t0 = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    with self._lock:
                        self.seconds[_key] += time.perf_counter() - t0
                        self.calls[_key] += 1

            setattr(obj, name, timed)


EVENTS = ("search_started", "search_finished", "stage1_started", "stage1_finished", "trial_started",
          "trial_result", "trial_finished", "target_finished")
WRITES = ("create_run", "log_params", "log_metrics", "set_tags", "end_run", "log_artifact", "reopen_run")


class Stage2Mark:
    """CPU and wall time at the first stage-2 trial's start: stage 2 alone is measured from there."""

    def __init__(self):
        self.at = None

    def trial_started(self, record):
        if self.at is None:
            self.at = (cpu_seconds(), time.perf_counter())

    def __getattr__(self, name):  # every other event: nothing
        return lambda *a, **k: None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(trials: int, per_cell: int, root: Path) -> dict:
    from rich.console import Console

    from xgrid.config import parse_space
    from xgrid.events import SearchListener
    from xgrid.planning.plan import build_plan
    from xgrid.search import results as results_module
    from xgrid.search.options import SearchOptions
    from xgrid.search.progress import Progress
    from xgrid.search.runner import run_search
    from xgrid.search.stage2 import selection_metric
    from xgrid.tasks import default_registry
    from xgrid.tracking import open_writer
    from xgrid.tracking.listener import TrackingListener

    scale_fakes.install()
    registry = default_registry()
    plan = build_plan(parse_space(space(trials, per_cell), registry), registry)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    clock = Clock()
    writer = open_writer(uri, plan.space.name)
    clock.wrap(writer.inner, WRITES, "mlflow.")
    tracker = TrackingListener(writer)
    clock.wrap(tracker, EVENTS, "tracker.")
    progress_file = open(root / "progress.log", "w")
    progress = Progress(Console(file=progress_file, force_terminal=False, width=200), selection_metric(plan.space))
    clock.wrap(progress, EVENTS, "progress.")
    # The results files are the runner's own listener: time its class's events.
    clock.wrap(results_module.ResultsFile, ("trial_finished", "write"), "results.")
    mark = Stage2Mark()

    class Mark(SearchListener):
        def trial_started(self, record):
            mark.trial_started(record)

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    outcome = run_search(plan, SearchOptions(output_root=root / "runs", store_root=str(root / "store"),
                                             ray_init={"num_cpus": 2, **scale_fakes.RAY_INIT},
                                             listeners=(Mark(), tracker, progress)))
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    progress_file.close()
    n = sum(len(rs) for rs in outcome.records.values()) if hasattr(outcome, "records") else trials
    runs = clock.calls.get("mlflow.create_run", 0)
    s2_cpu0, s2_wall0 = mark.at or (cpu0, wall0)
    return {"planned": sum(plan.trials_of(c) for c in plan.cells), "trials": n, "cells": len(plan.cells),
            "stage1_jobs": len(plan.trained_jobs), "cpu": cpu1 - cpu0, "wall": wall1 - wall0,
            "stage2_cpu": cpu1 - s2_cpu0, "stage2_wall": wall1 - s2_wall0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "mlflow_runs": runs, "mlflow_seconds": sum(v for k, v in clock.seconds.items() if k.startswith("mlflow.")),
            "seconds": dict(clock.seconds), "calls": dict(clock.calls),
            "statuses": _statuses(outcome)}


class NullWriter:
    """A RunWriter that stores nothing: the tracker's own bookkeeping (search_state.json ...) without MLflow."""

    tracking_uri, experiment_id = None, "0"

    def __init__(self):
        self.runs = 0

    def create_run(self, name, tags):
        import uuid

        self.runs += 1
        return uuid.uuid4().hex

    def __getattr__(self, name):
        return lambda *a, **k: None


def listeners_child(trials: int, per_cell: int, root: Path) -> dict:
    """The driver's own listeners (results files, the tracker over a writer that stores nothing, the progress)
    hearing a search's events, with no Ray and no MLflow: what xgrid's driver code costs per trial."""
    from rich.console import Console

    from xgrid.search.progress import Progress
    from xgrid.search.results import ResultsFile
    from xgrid.tracking_schema import select_metric

    from synthetic_store import drive_search

    clock = Clock()
    progress_file = open(root / "progress.log", "w")

    def others(parsed):
        results = ResultsFile(root / "search", parsed)
        progress = Progress(Console(file=progress_file, force_terminal=False, width=200),
                            select_metric(parsed.selection_policy))
        clock.wrap(results, ("trial_finished",), "results.")
        clock.wrap(progress, EVENTS, "progress.")
        return [results, progress]

    from xgrid.tracking.listener import TrackingListener

    clock.wrap(TrackingListener, EVENTS, "tracker.")
    writer = NullWriter()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    n = drive_search(writer, space(trials, per_cell), root / "search", others=others, save_state=True)
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    return {"trials": n, "cpu": cpu1 - cpu0, "wall": wall1 - wall0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": dict(clock.seconds), "calls": dict(clock.calls)}


def _statuses(outcome) -> dict:
    counts = defaultdict(int)
    for records in getattr(outcome, "records", {}).values():
        for r in records:
            counts[r.status] += 1
    return dict(counts)


def report(r: dict) -> None:
    n = r["trials"]
    print(f"{n} stage-2 trials ({r['cells']} cells, {r['stage1_jobs']} stage-1 jobs; {r['statuses']}): "
          f"wall {r['wall']:.0f} s (stage 2 {r['stage2_wall']:.0f} s), driver CPU {r['cpu']:.1f} s = "
          f"{r['cpu'] / n:.3f} s/trial (stage 2 alone {r['stage2_cpu'] / n:.3f} s/trial), peak RSS "
          f"{r['peak_rss_mib']:.0f} MiB, MLflow writes {r['mlflow_seconds']:.1f} s over {r['mlflow_runs']} runs = "
          f"{1000 * r['mlflow_seconds'] / max(1, r['mlflow_runs']):.1f} ms/run")
    top = sorted(r["seconds"].items(), key=lambda kv: -kv[1])[:8]
    print("  time in: " + ", ".join(f"{k} {v:.1f} s ({r['calls'][k]} calls)" for k, v in top))


def report_listeners(r: dict) -> None:
    n = r["trials"]
    print(f"{n} trials through the listeners alone: CPU {r['cpu']:.1f} s = {1000 * r['cpu'] / n:.1f} ms/trial "
          f"(event synthesis included), peak RSS {r['peak_rss_mib']:.0f} MiB")
    top = sorted(r["seconds"].items(), key=lambda kv: -kv[1])[:6]
    print("  time in: " + ", ".join(f"{k} {1000 * v / n:.1f} ms/trial" for k, v in top))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", default="500,2000", help="stage-2 trials per search, comma-separated")
    parser.add_argument("--trials-per-cell", type=int, default=5)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--listeners-only", action="store_true",
                        help="no Ray, no MLflow: the driver's listeners hearing a search's events (fast at 5,000)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (listeners_child if args.listeners_only else child)(args.child, args.trials_per_cell, args.root)
        print("RESULT " + json.dumps(result))
        return
    scale_fakes.benchmark_env()
    base = args.keep or Path(tempfile.mkdtemp(prefix="xgrid-driver-scale-"))
    results = []
    for trials in [int(t) for t in args.trials.split(",")]:
        root = base / f"n{trials}"
        root.mkdir(parents=True, exist_ok=True)
        print(f"load before {trials}: {os.getloadavg()}", flush=True)
        done = subprocess.run([sys.executable, __file__, "--child", str(trials), "--root", str(root),
                               "--trials-per-cell", str(args.trials_per_cell)]
                              + (["--listeners-only"] if args.listeners_only else []), capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(f"{trials} trials: the child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
            break
        results.append(json.loads(line[7:]))
        (report_listeners if args.listeners_only else report)(results[-1])
        print(f"load after {trials}: {os.getloadavg()}", flush=True)
    if len(results) > 1 and args.listeners_only:
        a, b = results[0], results[-1]
        print(f"growth {a['trials']} -> {b['trials']} trials: listeners' CPU/trial "
              f"{(b['cpu'] / b['trials']) / (a['cpu'] / a['trials']):.2f}x, peak RSS "
              f"{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x")
    elif len(results) > 1:
        a, b = results[0], results[-1]
        per = lambda r, k: r[k] / r["trials"]
        print(f"growth {a['trials']} -> {b['trials']} trials: driver CPU/trial {per(b, 'cpu') / per(a, 'cpu'):.2f}x "
              f"(stage 2 alone {per(b, 'stage2_cpu') / per(a, 'stage2_cpu'):.2f}x), wall/trial "
              f"{per(b, 'stage2_wall') / per(a, 'stage2_wall'):.2f}x, MLflow ms/run "
              f"{(b['mlflow_seconds'] / b['mlflow_runs']) / (a['mlflow_seconds'] / a['mlflow_runs']):.2f}x, "
              f"peak RSS {b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x")
        print(f"goals at {b['trials']}: growth within 2x: {per(b, 'cpu') / per(a, 'cpu') <= 2}; < 0.2 s driver "
              f"CPU/trial: {per(b, 'cpu') < 0.2}; < 1 GiB: {b['peak_rss_mib'] < 1024}")


if __name__ == "__main__":
    main()
