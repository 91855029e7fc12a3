"""`xgrid compare` on a big experiment: wall time, CPU time and peak memory at 1,000 and 10,000 stage-2 runs.

    python benchmarks/compare_scale.py [--sizes 1000,10000] [--repeats 3] [--trials-per-cell 10] [--keep DIR]

Each size is one search in its own SQLite store (`sqlite:///.../mlflow.db`, xgrid's default kind of store): 3
targets (mb_xnli, mb_udpos, mb_xquad) x 11 intermediates (none + 5 syntactic + 5 semantic) x seeds, with
`--trials-per-cell` trials per cell (every fifth stopped early after one epoch, as ASHA does), 4 epochs each, plus
the stage-1 runs and the parent run: the tags, params and metrics (per epoch and final, both policies, every
metric of the target's format) that xgrid's tracker writes, written in bulk (`benchmarks/synthetic_store.py`).
Then `xgrid compare EXPERIMENT --tracking-uri ... --out ...` runs as a subprocess `--repeats` times; its wall
time, user+sys CPU time and peak RSS (`os.wait4`'s rusage of that child) are printed as median (min, max), with
the ratio of the largest size to the smallest. Goal: under 30 s and under 1 GiB at 10,000 runs. The reference
line is `xgrid compare --help` (imports alone). Every repeat's printed report must be the same.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_store import BulkWriter, drive_search, seeds_for, space_dict  # noqa: E402

XGRID = [sys.executable, "-m", "xgrid.cli"]


def run_child(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(wall s, user+sys s, peak RSS MiB, stdout) of one child process, reaped with wait4 for its own rusage."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=os.environ | {"COLUMNS": "200"})
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        text = out.read()
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {child.returncode}:\n{err.read()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def fingerprint(report: str) -> str:
    """The printed report without the lines that name this run's files or the compare run it logged."""
    kept = [line for line in report.splitlines() if not line.startswith(("wrote ", "logged them"))]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:12]


def synthesize(root: Path, runs: int, trials_per_cell: int) -> tuple[str, str, int, float]:
    name = f"scale-{runs}"
    t0 = time.perf_counter()
    writer = BulkWriter(root / "mlflow.db", name, root)
    n = drive_search(writer, space_dict(name, seeds_for(runs, trials_per_cell), trials_per_cell), root / "search")
    writer.flush()
    return name, writer.tracking_uri, n, time.perf_counter() - t0


def summary(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000", help="stage-2 runs per experiment, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials-per-cell", type=int, default=10)
    parser.add_argument("--keep", type=Path, help="write the stores here and keep them (default: a temp folder)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="xgrid-compare-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    wall, cpu, rss, _ = run_child([*XGRID, "compare", "--help"], base)
    print(f"reference `xgrid compare --help` (imports): wall {wall:.1f} s, cpu {cpu:.1f} s, peak RSS {rss:.0f} MiB")
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        root = base / f"n{size}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        name, uri, n, took = synthesize(root, size, args.trials_per_cell)
        print(f"{name}: {n} stage-2 runs synthesized in {took:.1f} s ({uri})")
        walls, cpus, rsss, prints = [], [], [], set()
        for i in range(args.repeats):
            w, c, r, out = run_child([*XGRID, "compare", name, "--tracking-uri", uri, "--out", str(root / f"out{i}")],
                                     root)
            walls.append(w), cpus.append(c), rsss.append(r), prints.add(fingerprint(out))
            print(f"  repeat {i + 1}: wall {w:.1f} s, cpu {c:.1f} s, peak RSS {r:.0f} MiB, load {os.getloadavg()[0]:.2f}")
        rows.append((size, n, walls, cpus, rsss))
        print(f"  {n} runs: wall {summary(walls, '{:.1f}')} s, cpu {summary(cpus, '{:.1f}')} s, peak RSS "
              f"{summary(rsss, '{:.0f}')} MiB; reports identical across repeats: {len(prints) == 1}")
    if len(rows) > 1:
        (s0, n0, w0, c0, r0), (s1, n1, w1, c1, r1) = rows[0], rows[-1]
        m = statistics.median
        print(f"growth {n0} -> {n1} runs ({n1 / n0:.1f}x): wall {m(w1) / m(w0):.2f}x, cpu {m(c1) / m(c0):.2f}x, "
              f"peak RSS {m(r1) / m(r0):.2f}x")
        print(f"goal at {n1} runs: wall < 30 s: {m(w1) < 30} ({m(w1):.1f} s); peak RSS < 1 GiB: {max(r1) < 1024} "
              f"({max(r1):.0f} MiB)")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
