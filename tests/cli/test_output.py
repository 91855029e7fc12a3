"""Output as a script or a log sees it: the CLI in a real subprocess with stdout to a pipe (no terminal, no
COLUMNS), so rich cannot fall back to 80 columns and fold cells into slivers; `--json` / `--format json`; and the
progress, one line per change in a log and a Live table in a terminal."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from xgrid.cli import common
from xgrid.spaces import DEFAULT_SPACE
from xgrid.config import load_space
from xgrid.planning.cost import estimate
from xgrid.planning.plan import build_plan
from xgrid.running.store import CheckpointStore
from xgrid.search.progress import Progress
from xgrid.tasks import default_registry
from tests.compare.test_runs import EXPERIMENT, grid_store  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SPACES = {"default": DEFAULT_SPACE, "xtreme_r": ROOT / "search_spaces" / "xtreme_r_syntactic_vs_semantic.yaml"}
BORDERS = set("│┃┏┓┗┛┡┩━─└┘╇╋")


@functools.cache
def xgrid(*args: str) -> subprocess.CompletedProcess:
    """`xgrid ARGS` with stdout and stderr to pipes, as `| cat` or `> file` would; each command runs once."""
    env = {**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "xgrid.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def rows(text: str) -> list[list[str]]:
    """The body rows of rich tables: the cells of each `│ a │ b │` line."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


def assert_whole_rows(text: str) -> None:
    """No cell cut short, and no row that only carries on a cell of the row above (a wrapped cell)."""
    assert "…" not in text
    for cells in rows(text):
        assert cells[0], f"continuation line: {cells}"


def test_tasks_piped_keeps_every_row_whole():
    result = xgrid("tasks")
    assert result.returncode == 0, result.stderr
    assert_whole_rows(result.stdout)
    by_name = {cells[0]: cells for cells in rows(result.stdout)}
    registry = list(default_registry())
    assert len(rows(result.stdout)) == len(registry)
    for task in registry:
        assert by_name[task.name][-1] == str(task.source.describe()), task.name
    assert result.stdout.splitlines()[-1] == f"{len(registry)} tasks"


@pytest.mark.parametrize("space", SPACES)
def test_dry_run_piped_keeps_intermediates_and_notes_on_one_line(space):
    result = xgrid("search", str(SPACES[space]), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert_whole_rows(result.stdout)
    plan = build_plan(load_space(SPACES[space], default_registry()), default_registry())
    by_target = {cells[0]: cells for cells in rows(result.stdout)}
    for target in plan.space.targets:
        assert by_target[target][-1] == ", ".join(dict.fromkeys(c.intermediate for c in plan.cells_for(target)))
    lines = result.stdout.splitlines()
    for note in plan.notes + estimate(plan).notes:
        assert f"note: {note}" in lines
    assert any(line.startswith(f"cells: {len(plan.cells)} ") and line.endswith("retrieval evaluations: "
                                                                              f"{plan.retrieval_evaluations()}")
               for line in lines)


def test_tasks_json_lists_every_task_with_all_its_languages():
    result = xgrid("tasks", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    registry = list(default_registry())
    assert [e["name"] for e in entries] == [t.name for t in registry]
    for entry, task in zip(entries, registry):
        assert entry == {"name": task.name, "format": task.format, "kind": task.kind,
                         "role": "target" if task.is_target else "intermediate", "group": task.group,
                         "languages": list(task.languages), "source": str(task.source.describe()),
                         "metric": task.metric}
    assert any(len(e["languages"]) > 8 for e in entries)  # the table abbreviates these; JSON does not


@pytest.mark.parametrize("space", SPACES)
def test_dry_run_json_has_the_numbers_of_the_estimate(space):
    result = xgrid("search", str(SPACES[space]), "--dry-run", "--format", "json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    plan = build_plan(load_space(SPACES[space], default_registry()), default_registry())
    store = CheckpointStore(ROOT / "xgrid_runs" / "store")  # the default store of a search started in ROOT
    cost = estimate(plan, has=store.has)
    assert out["space"] == plan.space.name and out["fingerprint"] == plan.space.fingerprint()
    assert out["totals"] == {"cells": len(plan.cells), "stage1_checkpoints": cost.stage1_jobs,
                             "stage1_to_train": cost.stage1_to_train, "stage1_in_store": cost.stage1_in_store,
                             "stage2_trials": cost.stage2_trials, "retrieval_evaluations": cost.retrieval_evals,
                             "stage1_example_passes": cost.stage1_example_passes,
                             "stage2_example_passes": cost.stage2_example_passes}
    estimates = out["estimates"]
    assert (estimates["cpu_seconds_on_2_cpus"], estimates["h100_gpu_hours"]) == (cost.cpu_seconds, cost.gpu_hours)
    assert estimates["complete"] is cost.complete
    assert [(m["model"], m["params"], m["cpu_seconds_on_2_cpus"], m["h100_gpu_hours"], m["reason"])
            for m in estimates["models"]] == [(m.model, m.params, m.cpu_seconds, m.gpu_hours, m.reason)
                                              for m in cost.models]
    assert out["notes"] == plan.notes + cost.notes
    assert [t["target"] for t in out["targets"]] == list(plan.space.targets)
    assert sum(t["trials"] for t in out["targets"]) == cost.stage2_trials
    assert sum(t["cells"] for t in out["targets"]) == len(plan.cells)


def test_json_without_dry_run_is_refused_in_one_line(tmp_path):
    # --address ray://: should the refusal ever go, the search is still refused before it writes anything
    result = xgrid("search", "--format", "json", "--output-dir", str(tmp_path), "--address", "ray://nowhere:1")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --format json needs --dry-run"), result.stderr


def test_compare_piped_keeps_every_row_whole(grid_store, tmp_path):  # noqa: F811
    result = xgrid("compare", EXPERIMENT, "--tracking-uri", grid_store.uri, "--out", str(tmp_path), "--n-boot", "50",
                   "--no-log")
    assert result.returncode == 0, result.stderr
    assert_whole_rows(result.stdout)
    assert rows(result.stdout)
    assert any(line.startswith("wrote ") and line.endswith(str(tmp_path.resolve())) for line in result.stdout.splitlines())


def test_console_fits_content_off_a_terminal_unless_columns_is_set(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert common._console().width == common.LOG_WIDTH  # pytest captures stdout: not a terminal
    monkeypatch.setenv("COLUMNS", "123")
    assert common._console().width == 123


# ---------------------------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------------------------

def job(key: str, trains: bool = True):
    return SimpleNamespace(key=key, trains=trains)


JOBS = [job("a"), job("b"), job("none", trains=False)]  # the `none` baseline trains nothing: never counted


class FakePlan(SimpleNamespace):
    """What the progress reads of a plan: 2 trained checkpoints + the baseline, targets t1 and t2 of 1 cell x 2
    trials each, and a retrieval target r of 3 cells (one evaluation each)."""

    def __init__(self):
        super().__init__(jobs=JOBS, trained_jobs=JOBS[:2], trials_per_cell=lambda target, model=None: 2,
                         trials_of=lambda cell: 2,
                         space=SimpleNamespace(targets=["t1", "t2", "r"],
                                               resources=SimpleNamespace(max_concurrent_trials=2)))

    def cells_for(self, target):
        return [SimpleNamespace(trains=target != "r")] * (3 if target == "r" else 1)


PLAN = FakePlan()
_ids = iter(range(10_000))


def trial(target: str, status: str = "completed"):
    return SimpleNamespace(trial_id=f"trial-{next(_ids)}", cell=SimpleNamespace(target=target), status=status)


def drive(progress: Progress) -> None:
    progress.search_started(PLAN, "/runs/x")
    for j in PLAN.jobs:
        progress.stage1_started(j)
        progress.stage1_finished(j, j.trains, {})
    for target, score in (("t1", 50.0), ("t2", 60.0)):
        for status in ("completed", "stopped"):
            record = trial(target, status)
            progress.trial_started(record)
            progress.trial_result(record, {"en_dev": score})
            progress.trial_finished(record)
    progress.search_finished("FINISHED")


def log_lines(out: io.StringIO) -> list[str]:
    lines = out.getvalue().splitlines()
    for line in lines:
        assert re.match(r"\[\s*\d+ s\] \S", line), line
        assert not BORDERS & set(line), line
    return [line.split("] ", 1)[1] for line in lines]


def test_progress_off_a_terminal_prints_one_line_per_change():
    out = io.StringIO()
    drive(Progress(Console(file=out, width=80), "en_dev", interval=0))
    lines = log_lines(out)
    assert len(lines) == len(set(lines))  # only changes
    assert "stage 1: 2/2 checkpoints (2 trained, 0 reused from the store, 0 failed), 0 running, 0 queued" in lines
    assert ("t1 (target 1 of 3): 2/2 trials (1 completed, 1 stopped early, 0 failed), 0 running, 0 queued, "
            "best en_dev 50.0") in lines
    assert lines[-1] == ("t2 (target 2 of 3): 2/2 trials (1 completed, 1 stopped early, 0 failed), 0 running, "
                         "0 queued, best en_dev 60.0")


def test_progress_off_a_terminal_is_throttled_but_ends_each_stage_and_target():
    out = io.StringIO()
    drive(Progress(Console(file=out, width=80), "en_dev", interval=3600))
    assert log_lines(out) == [
        # the first line is not held back; nothing has finished, so there is nothing to base an ETA on
        "stage 1: 0/2 checkpoints (0 trained, 0 reused from the store, 0 failed), 0 running, 2 queued, ETA unknown",
        "stage 1: 2/2 checkpoints (2 trained, 0 reused from the store, 0 failed), 0 running, 0 queued",
        "t1 (target 1 of 3): 2/2 trials (1 completed, 1 stopped early, 0 failed), 0 running, 0 queued, best en_dev 50.0",
        "t2 (target 2 of 3): 2/2 trials (1 completed, 1 stopped early, 0 failed), 0 running, 0 queued, best en_dev 60.0",
    ]


def test_progress_counts_running_apart_from_queued_and_gives_an_eta_once_a_unit_has_finished():
    out = io.StringIO()
    progress = Progress(Console(file=out, width=80), "en_dev", interval=0)
    progress.search_started(PLAN, "/runs/x")
    progress.stage1_started(JOBS[2])  # the baseline: not a checkpoint to train
    progress.stage1_started(JOBS[0])
    assert log_lines(out)[-1] == ("stage 1: 0/2 checkpoints (0 trained, 0 reused from the store, 0 failed), "
                                  "1 running, 1 queued, ETA unknown")
    progress.stage1_finished(JOBS[0], True, {})
    assert re.fullmatch(r"stage 1: 1/2 checkpoints \(1 trained, 0 reused from the store, 0 failed\), 0 running, "
                        r"1 queued, ETA \d+s", log_lines(out)[-1])
    progress.stage1_finished(JOBS[1], False, None)  # reused: done at once, nothing trained
    assert log_lines(out)[-1] == ("stage 1: 2/2 checkpoints (1 trained, 1 reused from the store, 0 failed), "
                                  "0 running, 0 queued")
    first, second = trial("r"), trial("r")
    progress.trial_started(first)
    progress.trial_started(second)
    assert log_lines(out)[-1] == ("r (target 3 of 3): 0/3 evaluations (0 completed, 0 stopped early, 0 failed), "
                                  "2 running, 1 queued, best en_dev -, ETA unknown")
    progress.trial_finished(first)
    assert re.search(r"1/3 evaluations .* 1 running, 1 queued, best en_dev -, ETA \d+s$", log_lines(out)[-1])
    progress.search_finished("KILLED")


def test_progress_prints_a_held_back_change_when_the_interval_is_up():
    out = io.StringIO()
    progress = Progress(Console(file=out, width=80), "en_dev", interval=0.2)
    progress.search_started(PLAN, "/runs/x")
    progress.stage1_started(JOBS[0])  # within the interval: held back, then printed by the timer
    time.sleep(0.6)
    assert log_lines(out)[-1] == ("stage 1: 0/2 checkpoints (0 trained, 0 reused from the store, 0 failed), "
                                  "1 running, 1 queued, ETA unknown")
    progress.search_finished("KILLED")


def test_progress_stays_on_stdout_while_tune_output_is_redirected(capsys):
    # stage 2 runs Tune inside redirect_stdout(tune.log): the progress must not follow it there
    progress = Progress(Console(width=80), "en_dev", interval=0)
    progress.search_started(PLAN, "/runs/x")
    tune_log = io.StringIO()
    with contextlib.redirect_stdout(tune_log):
        record = trial("t1")
        progress.trial_started(record)
        progress.trial_finished(record)
    progress.search_finished("FINISHED")
    assert tune_log.getvalue() == ""
    assert "t1 (target 1 of 3): 1/2 trials (1 completed" in capsys.readouterr().out


def test_progress_in_a_terminal_is_a_live_table():
    out = io.StringIO()
    progress = Progress(Console(file=out, width=100, force_terminal=True), "en_dev")
    progress.search_started(PLAN, "/runs/x")
    assert progress._live is not None
    progress.search_finished("FINISHED")
    text = out.getvalue()
    assert "┏" in text and "best en_dev" in text and "t2" in text


def test_a_resumed_search_counts_the_trials_an_earlier_driver_finished():
    out = io.StringIO()
    progress = Progress(Console(file=out, width=80), "en_dev", interval=0)
    progress.search_started(PLAN, "/runs/x")
    for j in PLAN.jobs:
        progress.stage1_finished(j, False, None)
    earlier = trial("t1", "stopped")
    earlier.metrics = {"en_dev": 55.0}
    progress.trial_restored(earlier)  # heard before this driver's own trials start
    record = trial("t1")
    progress.trial_started(record)
    assert log_lines(out)[-1] == ("t1 (target 1 of 3): 1/2 trials (0 completed, 1 stopped early, 0 failed), "
                                  "1 running, 0 queued, best en_dev 55.0, ETA unknown")
    progress.search_finished("KILLED")
