"""`search_status` on real search folders, built without Ray: `space.yaml`/`plan.json` written as the runner writes
them, a real `TrackingListener` writing trials into a SQLite MLflow store, `results.json` from `write_results`, and
Optuna studies in `optuna.journal` (or an earlier xgrid's `optuna.db`)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from xgrid import tracking_schema as schema
from xgrid.config import parse_space
from xgrid.events import TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.search.results import best_per_cell, write_results
from xgrid.search.runner import write_search_files
from xgrid.search.studies import JOURNAL, LEGACY_DB, study_storage
from xgrid.search.status import (FINISHED, INTERRUPTED, MLFLOW, OPTUNA, RESULTS, RUNNING, STALLED, StatusError,
                                 find_search_dirs, latest_search_dir, search_status)
from xgrid.tracking import open_writer
from xgrid.tracking.listener import TrackingListener
from xgrid.tracking_schema import default_tracking_uri

SPACE = {"name": "st", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0],
         "target_training": {"learning_rate": {"low": 1e-4, "high": 1e-2}, "epochs": 3},
         "search": {"trials_per_cell": 3}, "resources": {"max_concurrent_trials": 2}}
STAMP = "20250101-120000-000000"


@pytest.fixture(scope="module")
def plan(registry):
    return build_plan(parse_space(SPACE, registry), registry)


def new_search(root: Path, plan, stamp: str = STAMP) -> Path:
    """A search folder as `run_search` leaves it before anything runs."""
    search_dir = root / plan.space.name / stamp
    search_dir.mkdir(parents=True)
    write_search_files(search_dir, plan)
    return search_dir


def cell(plan, target, intermediate):
    return next(c for c in plan.cells if c.target == target and c.intermediate == intermediate)


def completed(trial_id, c, lr, best, avg, seconds):
    metric = c.metric
    return TrialRecord(trial_id, c, lr, "completed", {schema.EPOCH: 3, schema.best_metric(schema.ENGLISH_DEV): best,
                                                      f"{metric}.avg": avg, f"{metric}.xa": avg - 1,
                                                      f"target_dev.{metric}.avg": avg + 5, schema.SECONDS: seconds})


def udpos_trials(plan):
    none, chunk = cell(plan, "mb_udpos", "none"), cell(plan, "mb_udpos", "mb_chunk")
    return [completed("t1", none, 1e-3, 50.0, 40.0, 10.0),
            TrialRecord("t2", none, 3e-3, "stopped", {schema.EPOCH: 1, "select.english_dev": 20.0,
                                                      "time_total_s": 4.0}),
            completed("t3", chunk, 2e-3, 60.0, 55.0, 12.0),
            TrialRecord("t4", chunk, 5e-3, "failed", {}, error="boom")]


def tatoeba_eval(plan, intermediate="mb_chunk"):
    c = cell(plan, "mb_tatoeba", intermediate)
    return TrialRecord(f"retrieval-{c.id}", c, None, "completed",
                       {"accuracy.avg": 70.0 if intermediate == "mb_chunk" else 30.0, "accuracy.xa": 65.0,
                        schema.SECONDS: 2.0, schema.EPOCH: 0})


def start_tracked(root: Path, plan) -> tuple[Path, TrackingListener]:
    """The search started: the parent run, stage 1 (the baseline trains nothing; mb_chunk trained here)."""
    search_dir = new_search(root, plan)
    tracker = TrackingListener(open_writer(default_tracking_uri(root), plan.space.name))
    tracker.search_started(plan, str(search_dir))
    baseline, job = sorted(plan.jobs, key=lambda j: j.trains)
    tracker.stage1_finished(baseline, False, None)
    tracker.stage1_started(job)
    tracker.stage1_finished(job, True, {"history": [], "final": {}})
    return search_dir, tracker


@contextmanager
def mlflow_clock(start: float):
    """MLflow stamps a run's start and end with its own clock (`mlflow.utils.time`), and `xgrid status` times
    trials by them. Trials played here take no time, so the clock is moved by hand: each by the seconds it
    reports."""
    import mlflow.utils.time as mlflow_time

    clock, original = SimpleNamespace(now=start), mlflow_time.time
    mlflow_time.time = SimpleNamespace(time=lambda: clock.now)
    try:
        yield clock
    finally:
        mlflow_time.time = original


def play(tracker, records, clock=None):
    for record in records:
        tracker.trial_started(record)
        if clock is not None:
            clock.now += record.metrics.get(schema.SECONDS, record.metrics.get("time_total_s", 1.0))
        tracker.trial_finished(record)


def tracked_search(root: Path, plan) -> tuple[Path, TrackingListener]:
    """A search in the middle of stage 2, its trials played one after another from 30 s ago (`tracker.t0`): udpos
    has 4 trials over (completed 10 s, stopped 4 s, completed 12 s, failed 1 s) and one running since; tatoeba has
    one of its two evaluations (2 s)."""
    search_dir, tracker = start_tracked(root, plan)
    tracker.t0 = time.time() - 30
    with mlflow_clock(tracker.t0) as clock:
        play(tracker, udpos_trials(plan), clock)
        tracker.trial_started(TrialRecord("t5", cell(plan, "mb_udpos", "mb_chunk"), 4e-3))  # still running
        play(tracker, [tatoeba_eval(plan)], clock)
    return search_dir, tracker


@pytest.fixture
def running(tmp_path, plan):
    root = tmp_path / "xgrid_runs"
    search_dir, tracker = tracked_search(root, plan)
    return root, search_dir, tracker


def by_target(status):
    return {t.target: t for t in status.targets}


def test_a_running_search_from_mlflow(running, plan):
    root, search_dir, tracker = running
    status = search_status(search_dir, default_tracking_uri(root), now=datetime.fromtimestamp(tracker.t0 + 30))
    assert status.state == RUNNING and status.mlflow_read and status.space == "st" and status.search_id == STAMP
    assert status.started_at == datetime(2025, 1, 1, 12, 0, 0)
    s1 = status.stage1
    assert (s1.total, s1.trained, s1.running, s1.failed, s1.reused, s1.done) == (1, 1, 0, 0, 0, True)
    udpos, tatoeba = by_target(status)["mb_udpos"], by_target(status)["mb_tatoeba"]
    assert udpos.source == MLFLOW and udpos.trains and udpos.trials_per_cell == 3 and udpos.planned == 6
    counts = (udpos.completed, udpos.stopped, udpos.failed, udpos.running, udpos.cut_off, udpos.left)
    assert counts == (2, 1, 1, 1, 0, 1)
    assert udpos.cells_done == 2 and udpos.cells == 2 and udpos.state == RUNNING
    best = udpos.best
    assert (best.score, best.metric, best.avg, best.avg_metric) == (60.0, "best.english_dev", 55.0, "f1.avg")
    assert best.intermediate == "mb_chunk" and best.seed == "0" and best.learning_rate == 2e-3
    # durations from the runs' start and end: t1 10 s, t2 4 s, t3 12 s; 1 left + 1 running over 2 at once
    assert udpos.median_trial_s == pytest.approx(10.0) and udpos.eta_s == pytest.approx(10.0)
    assert udpos.spent_s == pytest.approx(30.0, abs=0.01) and not udpos.spent_is_sum  # first start to now (t5 runs)
    assert tatoeba.trains is False and tatoeba.trials_per_cell == 1 and tatoeba.planned == 2
    assert (tatoeba.completed, tatoeba.stopped, tatoeba.failed, tatoeba.running, tatoeba.left) == (1, 0, 0, 0, 1)
    assert tatoeba.best.score == 70.0 and tatoeba.best.metric == "accuracy.avg" and tatoeba.cells_done == 1
    assert tatoeba.eta_s == pytest.approx(2.0) and status.eta_s == pytest.approx(12.0)
    assert not any(note.startswith("Σ") for note in status.notes)  # wall times, not sums of trial times
    json.dumps(status.to_dict())  # JSON-safe


def test_an_interrupted_search_cuts_off_its_open_trials(running):
    root, search_dir, tracker = running
    tracker.search_finished("KILLED")  # Ctrl-C: the listener closes the running trial KILLED, without a status
    status = search_status(search_dir, default_tracking_uri(root))
    udpos = by_target(status)["mb_udpos"]
    assert status.state == INTERRUPTED and status.eta_s is None
    assert (udpos.running, udpos.cut_off, udpos.left, udpos.eta_s, udpos.state) == (0, 1, 1, None, "incomplete")


def test_a_search_quiet_for_too_long_is_stalled(running):
    root, search_dir, _ = running
    later = datetime.now() + timedelta(hours=2)
    status = search_status(search_dir, default_tracking_uri(root), now=later)
    assert status.state == STALLED and status.eta_s is None
    assert any("driver may have died" in note and "parent run is still RUNNING" in note for note in status.notes)
    assert by_target(status)["mb_udpos"].running == 1  # maybe still computing: not called cut off


def all_trials(plan):
    chunk = cell(plan, "mb_udpos", "mb_chunk")
    return {"mb_udpos": udpos_trials(plan) + [completed("t5", chunk, 4e-3, 58.0, 52.0, 11.0),
                                               TrialRecord("t6", chunk, 6e-3, "stopped", {"time_total_s": 3.0})],
            "mb_tatoeba": [tatoeba_eval(plan), tatoeba_eval(plan, "none")]}


def test_a_finished_search_from_results_json(tmp_path, plan):
    root = tmp_path / "xgrid_runs"
    search_dir, tracker = start_tracked(root, plan)
    records = all_trials(plan)
    for target_records in records.values():
        play(tracker, target_records)
    write_results(search_dir, records, best_per_cell([r for rs in records.values() for r in rs], plan.space))
    tracker.search_finished("FINISHED")

    status = search_status(search_dir, default_tracking_uri(root))
    assert status.state == FINISHED and status.eta_s is None and status.stage1.done
    udpos, tatoeba = by_target(status)["mb_udpos"], by_target(status)["mb_tatoeba"]
    assert udpos.source == RESULTS and udpos.state == "done"
    assert (udpos.completed, udpos.stopped, udpos.failed, udpos.running, udpos.left) == (3, 2, 1, 0, 0)
    assert udpos.best.score == 60.0 and udpos.cells_done == 2 and udpos.median_trial_s == 10.0
    assert (tatoeba.completed, tatoeba.left, tatoeba.cells_done, tatoeba.best.score) == (2, 0, 2, 70.0)

    # The folder alone says the same (MLflow gone): finished, because nothing is left
    alone = search_status(search_dir, None)
    assert alone.state == FINISHED and not alone.mlflow_read
    assert by_target(alone)["mb_udpos"].completed == 3 and alone.stage1.describe() == "done (1 checkpoints)"


def test_results_json_of_a_search_cut_short(tmp_path, plan):
    search_dir = new_search(tmp_path / "runs", plan)
    records = {"mb_udpos": udpos_trials(plan)}  # the driver died in its first target: the finally wrote these
    write_results(search_dir, records, best_per_cell(records["mb_udpos"], plan.space))
    status = search_status(search_dir, default_tracking_uri(tmp_path / "runs"))  # no store there
    assert status.state == INTERRUPTED and not status.mlflow_read
    assert any(n.startswith("MLflow was not read") and "no MLflow store" in n for n in status.notes)
    udpos, tatoeba = by_target(status)["mb_udpos"], by_target(status)["mb_tatoeba"]
    assert (udpos.left, udpos.state, tatoeba.left, tatoeba.state) == (2, "incomplete", 2, "incomplete")


def optuna_search(root: Path, plan, legacy: bool = False) -> Path:
    """A search whose udpos study has a trial of every kind, and no MLflow store at all. `legacy`: in the SQLite
    `optuna.db` of an earlier xgrid, not the journal."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import FrozenTrial, TrialState

    search_dir = new_search(root, plan)
    if legacy:
        optuna.storages.RDBStorage(f"sqlite:///{search_dir / LEGACY_DB}")
    none, chunk = cell(plan, "mb_udpos", "none").id, cell(plan, "mb_udpos", "mb_chunk").id
    dists = {"cell": CategoricalDistribution([none, chunk]), "learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}
    study = optuna.create_study(study_name="st.mb_udpos", direction="maximize", storage=study_storage(search_dir))
    t0 = datetime(2025, 1, 1, 12, 1, 0)

    def add(state, c, value, steps, start_s, seconds):
        study.add_trial(FrozenTrial(
            number=0, trial_id=0, state=state, value=value, values=None, datetime_start=t0 + timedelta(seconds=start_s),
            datetime_complete=t0 + timedelta(seconds=start_s + seconds), params={"cell": c, "learning_rate": 1e-3},
            distributions=dists, user_attrs={}, system_attrs={}, intermediate_values=steps))

    add(TrialState.COMPLETE, none, 45.0, {1: 40.0, 2: 50.0, 3: 45.0}, 0, 30)  # every epoch: completed, best 50
    add(TrialState.COMPLETE, chunk, 30.0, {1: 30.0}, 5, 10)  # one epoch of three: stopped early
    add(TrialState.FAIL, chunk, None, {}, 10, 2)
    study.enqueue_trial({"cell": chunk})
    study.ask(dists)  # pops the enqueued one: RUNNING
    study.enqueue_trial({"cell": chunk})  # WAITING: not started
    return search_dir


@pytest.mark.parametrize("legacy", [False, True], ids=["journal", "sqlite-of-an-earlier-xgrid"])
def test_optuna_only_when_mlflow_cannot_be_read(tmp_path, plan, legacy):
    root = tmp_path / "xgrid_runs"
    search_dir = optuna_search(root, plan, legacy)
    assert (search_dir / JOURNAL).exists() is not legacy
    status = search_status(search_dir, default_tracking_uri(root))  # mlflow.db does not exist
    assert not status.mlflow_read and status.state == RUNNING
    studies = LEGACY_DB if legacy else OPTUNA  # the notes name the file the counts come from
    assert any("MLflow was not read" in n for n in status.notes)
    assert any(f"counts from {studies}:" in n for n in status.notes)
    udpos, tatoeba = by_target(status)["mb_udpos"], by_target(status)["mb_tatoeba"]
    assert udpos.source == studies
    assert (udpos.completed, udpos.stopped, udpos.failed, udpos.running, udpos.left) == (1, 1, 1, 1, 2)
    assert udpos.best.score == 50.0 and udpos.best.metric == "best.english_dev" and udpos.best.intermediate == "none"
    assert udpos.cells_done == 1 and udpos.median_trial_s == 20.0
    assert udpos.spent_s > 30 and not udpos.spent_is_sum  # wall clock from the study, up to now (one runs)
    assert udpos.eta_s == pytest.approx(3 * 20.0 / 2)
    assert status.stage1.done and status.stage1.trained is None  # a study exists: stage 1 is over
    assert tatoeba.source == "none" and tatoeba.completed is None and tatoeba.state == "unknown"
    assert status.eta_s is None  # tatoeba cannot be estimated


def test_mlflow_counts_take_the_wall_clock_from_optuna(running, plan):
    root, search_dir, _ = running
    import optuna

    study = optuna.create_study(study_name="st.mb_udpos", storage=study_storage(search_dir))
    trial = study.ask()
    study.tell(trial, 1.0)
    status = search_status(search_dir, default_tracking_uri(root))
    udpos = by_target(status)["mb_udpos"]
    assert udpos.source == MLFLOW and udpos.completed == 2 and not udpos.spent_is_sum  # counts from the runs


def test_a_plan_with_nothing_else(tmp_path, plan):
    search_dir = new_search(tmp_path, plan)
    status = search_status(search_dir, None)
    assert status.state == RUNNING and all(t.source == "none" and t.left is None for t in status.targets)
    assert status.stage1.describe() == "unknown (no MLflow runs of it read)"
    assert any("no trial information" in n for n in status.notes)


def test_not_a_search_folder(tmp_path):
    with pytest.raises(StatusError, match="not a search folder"):
        search_status(tmp_path, None)
    with pytest.raises(StatusError, match="no such folder"):
        search_status(tmp_path / "nope", None)


def test_latest_search_folder(tmp_path, plan):
    old = new_search(tmp_path, plan, "20240101-000000-000000")
    new = new_search(tmp_path, plan, "20250101-000000-000000")
    (tmp_path / "store").mkdir()
    assert find_search_dirs(tmp_path) == [old, new] and latest_search_dir(tmp_path) == new
    assert latest_search_dir(tmp_path / "st") == new and latest_search_dir(old) == old
    assert latest_search_dir(tmp_path / "store") is None


def _hold_lock_in_another_process(search_dir: Path):
    """A live driver: another process holding the folder's lock (as `run_search` does for the whole search)."""
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from xgrid.search.resume import hold_search\n"
            "with hold_search(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(search_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_running_search_with_results_json_so_far_is_running_while_its_driver_holds_the_folder(running, plan):
    """results.json is rewritten after every trial: it no longer means the search ended."""
    from xgrid.folder_state import update_state

    root, search_dir, tracker = running
    records = {"mb_udpos": udpos_trials(plan)}
    write_results(search_dir, records, best_per_cell(records["mb_udpos"], plan.space))
    update_state(search_dir, status="running", pid=12345)
    holder = _hold_lock_in_another_process(search_dir)
    try:
        status = search_status(search_dir, default_tracking_uri(root))
    finally:
        holder.kill()
        holder.wait()
    assert status.state == RUNNING
    udpos = by_target(status)["mb_udpos"]
    assert udpos.source == MLFLOW and udpos.running == 1  # MLflow also sees the trial still running

    # The driver is gone now (killed: it never wrote how it ended): interrupted, with the command that resumes.
    gone = search_status(search_dir, default_tracking_uri(root))
    assert gone.state == INTERRUPTED
    assert any(f"xgrid search --resume {search_dir}" in note for note in gone.notes)
