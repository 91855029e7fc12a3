"""The bookkeeping of `xgrid search --resume`, without Ray: which trials each cell runs again (`plan_queue`, and on
a real Optuna study in the search's journal or an earlier xgrid's SQLite file), which trials results.json counts as
done, the folder's lock (held by a real other process), results.json rewritten after every trial, and the tracker
continuing the dead driver's runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
import pytest

from xgrid import tracking_schema as schema
from xgrid.config import parse_space
from xgrid.events import TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.search.results import ResultsFile
from xgrid.search.resume import (LOCK_FILE, FINISHED, SearchBusy, StudyTrial, check_not_running, finished_records,
                                 hold_search, plan_queue, read_state, resume_queue, unfinished_searches,
                                 update_state)
from xgrid.search.runner import write_search_files
from xgrid.search.stage2 import enqueued_points
from xgrid.search.studies import LEGACY_DB, study_file, study_storage
from xgrid.tracking.listener import ENDED_BY_RESUME, ENDED_BY_TAG, TrackingListener
from tests.tracking.memory import MemoryWriter, memory_backend  # noqa: F401 (a fixture)

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"name": "rs", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0],
         "target_training": {"learning_rate": {"values": [0.001, 0.002, 0.003]}, "epochs": 2},
         "search": {"trials_per_cell": 3}}


@pytest.fixture(scope="module")
def plan(registry):
    return build_plan(parse_space(SPACE, registry), registry)


def udpos(plan):
    return [c for c in plan.cells if c.target == "mb_udpos"]


def record(trial_id, cell, lr, status="completed"):
    return TrialRecord(trial_id, cell, lr, status, {schema.EPOCH: 2})


# --- plan_queue --------------------------------------------------------------------------------------------------
A, B = "cellA", "cellB"
POINTS = [{"cell": c, "learning_rate": lr} for c in (A, B) for lr in (0.1, 0.2, 0.3)]


class FakeCell:
    def __init__(self, id):
        self.id = id


def done(trial_id, cell):
    return TrialRecord(trial_id, FakeCell(cell), None)


def asked(number, cell, lr, state, trial_id):
    return StudyTrial(number, state, {"cell": cell, "learning_rate": lr}, trial_id)


def test_a_fresh_study_runs_the_planned_points():
    queue = plan_queue(POINTS, [], [], 3)
    assert queue.enqueue == POINTS and queue.runs == 6 and not queue.fail


def test_after_a_sigkill_the_running_trials_run_again_with_their_rate_and_waiting_ones_stay():
    trials = [asked(0, A, 0.1, "COMPLETE", "t0"), asked(1, A, 0.2, "RUNNING", "t1"), asked(2, A, 0.3, "RUNNING", "t2"),
              asked(3, B, 0.1, "RUNNING", "t3"), StudyTrial(4, "WAITING", {"cell": B, "learning_rate": 0.2}),
              StudyTrial(5, "WAITING", {"cell": B, "learning_rate": 0.3})]
    queue = plan_queue(POINTS, trials, [done("t0", A)], 3)
    assert queue.fail == [1, 2, 3]  # nobody runs them any more
    assert queue.enqueue == [{"cell": A, "learning_rate": 0.2}, {"cell": A, "learning_rate": 0.3},
                             {"cell": B, "learning_rate": 0.1}]
    assert queue.requeued == [1, 2, 3]
    assert queue.runs == 5  # 2 re-enqueued + 1 of cell A ... + the 2 waiting of B: each cell ends with 3


def test_a_trial_cut_off_by_an_interrupt_runs_again_even_if_optuna_was_told_it_finished():
    trials = [asked(0, A, 0.1, "COMPLETE", "t0"), asked(1, A, 0.2, "COMPLETE", "t1")]
    # t1 was cut off: results.json lists it as cut_off, so it is not among the done ones
    queue = plan_queue(POINTS, trials, [done("t0", A)], 3)
    assert queue.enqueue[:2] == [{"cell": A, "learning_rate": 0.2}, {"cell": A, "learning_rate": 0.3}]
    assert queue.enqueue[2:] == POINTS[3:]  # cell B never started: its planned points
    assert queue.runs == 5 and queue.fail == []


def test_a_second_resume_does_not_enqueue_the_same_dead_trial_twice():
    trials = [asked(0, A, 0.1, "FAIL", "t0"), StudyTrial(6, "WAITING", {"cell": A, "learning_rate": 0.1})]
    queue = plan_queue(POINTS[:3], trials, [], 1, requeued_before=[0])
    assert queue.enqueue == [] and queue.runs == 1 and queue.fail == []  # the waiting re-enqueued one runs


def test_a_cell_with_all_its_trials_done_runs_nothing_and_surplus_waiting_trials_fail():
    trials = [asked(i, A, lr, "COMPLETE", f"t{i}") for i, lr in enumerate((0.1, 0.2, 0.3))]
    trials += [StudyTrial(9, "WAITING", {"cell": A, "learning_rate": 0.3})]
    queue = plan_queue(POINTS[:3], trials, [done(f"t{i}", A) for i in range(3)], 3)
    assert queue.runs == 0 and queue.nothing_to_run and queue.fail == [9] and queue.enqueue == []


def test_a_trial_that_finished_but_was_never_told_to_optuna_is_failed_there_and_not_rerun():
    trials = [asked(0, A, 0.1, "RUNNING", "t0")]
    queue = plan_queue(POINTS[:3], trials, [done("t0", A)], 1)
    assert queue.fail == [0] and queue.enqueue == [] and queue.runs == 0


def test_sampled_learning_rates_only_fix_the_cell():
    points = [{"cell": A}] * 2
    trials = [asked(0, A, 0.05, "RUNNING", "t0")]
    queue = plan_queue(points, trials, [], 2)
    assert queue.enqueue == [{"cell": A, "learning_rate": 0.05}, {"cell": A}] and queue.runs == 2


@pytest.mark.parametrize("legacy", [False, True], ids=["journal", "sqlite-of-an-earlier-xgrid"])
def test_resume_queue_on_a_real_study(tmp_path, plan, legacy):
    cells = udpos(plan)
    points = enqueued_points(plan.space, [c.id for c in cells], "mb_udpos")
    if legacy:  # a folder an earlier xgrid made: its SQLite file goes on holding the studies
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path / LEGACY_DB}")
    storage = study_storage(tmp_path)
    assert (study_file(tmp_path).name == LEGACY_DB) is legacy and study_file(tmp_path).is_file()
    study = optuna.create_study(study_name="rs.mb_udpos", storage=storage, direction="maximize")
    for point in points:
        study.enqueue_trial(point)
    space = {"cell": optuna.distributions.CategoricalDistribution([c.id for c in cells]),
             "learning_rate": optuna.distributions.CategoricalDistribution([0.001, 0.002, 0.003])}
    first, second = study.ask(space), study.ask(space)  # two trials asked; the driver finished one, then died
    for trial, tid in ((first, "t0"), (second, "t1")):
        trial.set_user_attr(schema.TRIAL_ID_TAG, tid)
    study.tell(first, 1.0)
    finished = [record("t0", next(c for c in cells if c.id == first.params["cell"]), first.params["learning_rate"])]

    # The resumed driver opens the study afresh (another process: another journal worker than the dead one's)
    study = optuna.load_study(study_name="rs.mb_udpos", storage=study_storage(tmp_path))
    queue = resume_queue(study, "rs.mb_udpos", points, finished, 3, tmp_path)
    states = [t.state.name for t in study.get_trials()]
    assert "RUNNING" not in states and states.count("FAIL") == 1
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == queue.runs == 5
    assert waiting[-1] == second.params  # the dead one again, with its learning rate
    per_cell = {c.id: sum(w["cell"] == c.id for w in waiting) for c in cells}
    assert per_cell[first.params["cell"]] == 2 and sum(per_cell.values()) == 5
    # a second resume of the same state does not duplicate anything
    again = resume_queue(study, "rs.mb_udpos", points, finished, 3, tmp_path)
    assert again.enqueue == [] and again.runs == 5
    assert read_state(tmp_path)["optuna_requeued"] == {"rs.mb_udpos": [second.number]}


# --- results.json --------------------------------------------------------------------------------------------
def test_results_are_written_after_every_trial_and_read_back_as_done(tmp_path, plan):
    cells = udpos(plan)
    results = ResultsFile(tmp_path, plan.space)
    results.trial_finished(record("t0", cells[0], 0.001))
    assert [t["trial_id"] for t in json.loads((tmp_path / "results.json").read_text())["trials"]] == ["t0"]
    results.trial_finished(record("t1", cells[0], 0.002, "stopped"))
    results.add([record("t2", cells[1], 0.001, "cut_off")])
    results.write()
    assert (tmp_path / "results.csv").read_text().count("\n") == 3  # header + 2 cells
    assert not list(tmp_path.glob(".*tmp"))  # the atomic writes left no temporary file

    done = finished_records(tmp_path, plan)
    assert [(r.trial_id, r.status, r.learning_rate) for r in done["mb_udpos"]] == [("t0", "completed", 0.001),
                                                                                  ("t1", "stopped", 0.002)]
    resumed = ResultsFile(tmp_path, plan.space, done)  # old + new, each once
    resumed.trial_finished(record("t3", cells[1], 0.001))
    resumed.trial_finished(record("t3", cells[1], 0.001))
    ids = [t["trial_id"] for t in json.loads((tmp_path / "results.json").read_text())["trials"]]
    assert ids == ["t0", "t1", "t3"]


def test_an_unreadable_results_file_means_nothing_is_done(tmp_path, plan):
    (tmp_path / "results.json").write_bytes(b"\xff{")
    assert finished_records(tmp_path, plan) == {}


# --- the folder: state, lock, which search to resume -----------------------------------------------------------
def test_a_live_driver_holds_the_folder_and_its_death_lets_go(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from xgrid.search.resume import hold_search
        with hold_search({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "held"
        with pytest.raises(SearchBusy, match=rf"still running \(driver pid {driver.pid} holds {LOCK_FILE}\)"):
            check_not_running(tmp_path)
    finally:
        driver.kill()  # SIGKILL: the kernel drops the lock with the process
        driver.wait(timeout=60)
    with hold_search(tmp_path):
        with pytest.raises(SearchBusy):  # a second holder in this process too
            check_not_running(tmp_path)


def test_the_latest_unfinished_search_of_a_space(tmp_path, plan):
    folders = []
    for stamp in ("a", "b", "c"):
        folder = tmp_path / "rs" / stamp
        folder.mkdir(parents=True)
        write_search_files(folder, plan)
        folders.append(folder)
    update_state(folders[2], status=FINISHED)
    (tmp_path / "rs" / "not-a-search").mkdir()
    assert unfinished_searches(tmp_path, "rs")[-1] == folders[1]
    assert unfinished_searches(tmp_path, "other") == []


# --- the tracker continues the dead driver's runs ------------------------------------------------------------
def test_the_tracker_reuses_the_parent_and_ends_what_the_dead_driver_left_open(tmp_path, plan, memory_backend):
    search_dir = tmp_path / "rs" / "s"
    search_dir.mkdir(parents=True)
    write_search_files(search_dir, plan)
    cells = udpos(plan)
    dead = TrackingListener(MemoryWriter("memory:x", "rs"))  # unqueued: the store is read at once
    dead.search_started(plan, str(search_dir))
    finished, running = record("t0", cells[0], 0.001), record("t1", cells[0], 0.002)
    for r in (finished, running):
        dead.trial_started(r)
    dead.trial_finished(finished)
    dead.writer.end_run(dead.parent_id, "KILLED")  # as an interrupted driver leaves it; t1 stays RUNNING
    runs = memory_backend["memory:x"].runs
    parent = dead.parent_id
    assert {runs[i].tags[schema.TRIAL_ID_TAG]: runs[i].status for i in runs if i != parent} == {
        "t0": "FINISHED", "t1": "RUNNING"}

    alive = TrackingListener(MemoryWriter("memory:x", "rs"))
    alive.search_started(plan, str(search_dir))
    assert alive.parent_id == parent and runs[parent].status == "RUNNING"  # the same parent, reopened
    left = next(r for r in runs.values() if r.tags.get(schema.TRIAL_ID_TAG) == "t1")
    assert left.status == "KILLED" and left.tags[ENDED_BY_TAG] == ENDED_BY_RESUME
    assert left.tags[schema.STATUS_TAG] == "cut_off"
    rerun = record("t2", cells[0], 0.002)
    alive.trial_started(rerun)
    alive.trial_finished(rerun)
    alive.target_finished("mb_udpos", [finished, rerun])
    alive.search_finished("FINISHED")
    assert runs[parent].status == "FINISHED" and len([r for r in runs.values() if r.status == "RUNNING"]) == 0
    assert len(runs) == 4  # parent + t0 + t1 (killed) + t2: no second parent
    assert read_state(search_dir)["open_runs"] == {}


def test_a_rerun_trial_continues_from_the_last_checkpoint_its_earlier_attempt_left(tmp_path):
    from xgrid.search.resume import earlier_checkpoints

    trials = [asked(0, A, 0.1, "RUNNING", "t0"), asked(1, B, 0.2, "RUNNING", "t1")]
    queue = plan_queue(POINTS, trials, [], 3)
    (tmp_path / "t0" / "checkpoint_000001").mkdir(parents=True)  # t1 died before its first checkpoint
    folders = lambda cell, trial_id: [tmp_path / "missing", tmp_path / trial_id]
    latest = lambda folder: next(iter(sorted(folder.glob("checkpoint_*"))), None)
    assert earlier_checkpoints(queue, folders, latest) == {(A, 0.1): str(tmp_path / "t0" / "checkpoint_000001")}


def test_a_failure_mid_search_keeps_every_trial_finished_before_it(tmp_path, plan):
    cells = udpos(plan)
    results = ResultsFile(tmp_path, plan.space)
    with pytest.raises(RuntimeError):
        results.trial_finished(record("t0", cells[0], 0.001))
        raise RuntimeError("the tracking store went away")  # nothing after this line runs for the search
    assert [t["trial_id"] for t in json.loads((tmp_path / "results.json").read_text())["trials"]] == ["t0"]


def test_a_trial_tune_restarts_after_its_worker_died_keeps_its_one_run(plan):
    from types import SimpleNamespace

    from xgrid.events import SearchListener
    from xgrid.search.tune_events import TuneEvents

    cell = udpos(plan)[0]
    started = []

    class Listener(SearchListener):
        def trial_started(self, record):
            started.append(record.trial_id)

    events = TuneEvents({cell.id: cell}, Listener(), stopped_early=set())
    trial = SimpleNamespace(trial_id="t1", config={"cell": cell.id, "learning_rate": 0.001})
    events.on_trial_start(0, [], trial)
    events.on_trial_result(0, [], trial, {schema.EPOCH: 1})
    events.on_trial_start(0, [], trial)  # Tune's retry (search.max_failures) starts the same trial again
    assert started == ["t1"]
