"""`TrackingListener` writing a small search into the in-memory backend: the run structure of a search (parent,
children, statuses, params, per-epoch and final metrics, artifacts) needs nothing of MLflow."""

from __future__ import annotations

import pytest

from xgrid import tracking_schema as schema
from xgrid.config import parse_space
from xgrid.events import TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.tasks import default_registry
from xgrid.tracking import open_writer
from xgrid.tracking.listener import TrackingListener
from tests.tracking.memory import memory_backend  # noqa: F401

URI = "memory:search"
SPACE = {"name": "e", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0], "target_training": {"learning_rate": 0.001}}


@pytest.fixture(scope="module")
def plan():
    registry = default_registry()
    return build_plan(parse_space(SPACE, registry), registry)


@pytest.fixture
def search(memory_backend, plan, tmp_path):  # noqa: F811
    search_dir = tmp_path / "20250101-e"
    search_dir.mkdir()
    for name in ("space.yaml", "plan.json"):
        (search_dir / name).write_text("{}")
    # The backend's writer itself, so run ids are the store's; the queue in front of it: test_queued.py and
    # test_a_search_through_the_queue_is_complete_when_it_ends below.
    listener = TrackingListener(open_writer(URI, "e").inner)
    listener.search_started(plan, str(search_dir))
    return listener, memory_backend[URI], search_dir


def cell(plan, target, intermediate="mb_chunk"):
    return next(c for c in plan.cells if c.target == target and c.intermediate == intermediate)


def children(store, listener, stage):
    return [r for r in store.runs.values() if r.tags.get(schema.STAGE) == stage
            and r.tags[schema.PARENT_TAG] == listener.parent_id]


def test_parent_run_holds_the_search(search, plan):
    listener, store, search_dir = search
    parent = store.runs[listener.parent_id]
    assert parent.tags[schema.STAGE] == schema.SEARCH_STAGE and parent.name == f"search-{search_dir.name}"
    assert parent.tags[schema.SEARCH_ID_TAG] == search_dir.name and parent.tags[schema.SPACE_TAG] == "e"
    assert parent.tags[schema.POLICY_TAG] == schema.DEFAULT_POLICY
    assert parent.params["cells"] == "4" and parent.params["stage1_jobs"] == "1"
    assert parent.params["targets"] == "mb_udpos,mb_tatoeba"
    assert parent.artifacts == ["space.yaml", "plan.json"]
    assert listener.experiment_id == store.experiments["e"] and listener.tracking_uri == URI

    (search_dir / "results.csv").write_text("cell\n")
    listener.search_finished("FINISHED")
    assert parent.status == "FINISHED" and parent.artifacts[-1] == "results.csv"


def test_stage1_runs(search, plan):
    listener, store, _ = search
    baseline, job = sorted(plan.jobs, key=lambda j: j.trains)
    listener.stage1_finished(baseline, False, None)  # the baseline trains nothing: no run
    listener.stage1_started(job)
    history = [{"epoch": 1, "train_loss": 0.9, "dev.mb_chunk.f1": 40.0}, {"epoch": 2, "train_loss": 0.5,
                                                                          "dev.mb_chunk.f1": 50.0}]
    listener.stage1_finished(job, True, {"history": history, "final": {"english_dev": {"en": {"f1": 51.0}}}})
    (run,) = children(store, listener, schema.STAGE1)
    assert run.status == "FINISHED" and run.name == "stage1-mb_chunk-s0"
    assert run.tags[schema.STAGE1_KEY_TAG] == job.key and run.tags[schema.KIND_TAG] == "syntactic"
    assert run.tags[schema.INTERMEDIATE_TASKS_TAG] == "mb_chunk"
    assert run.params[schema.LEARNING_RATE] == "0.001" and run.params["epochs"] == "3"
    assert run.history["train_loss"] == [(1, 0.9), (2, 0.5)] and run.history["f1"] == [(0, 51.0)]
    assert "epoch" not in run.history

    listener.stage1_started(job)
    listener.stage1_failed(job, "out of memory")
    failed = children(store, listener, schema.STAGE1)[-1]
    assert failed.status == "FAILED" and failed.tags[schema.ERROR_TAG] == "out of memory"


def test_trial_statuses_params_and_metrics(search, plan):
    listener, store, _ = search
    udpos = cell(plan, "mb_udpos")
    records = {status: TrialRecord(f"trial-{status}", udpos, 0.003, status) for status in
               ("completed", "stopped", "failed")}
    for record in records.values():
        listener.trial_started(record)
        for epoch in (1, 2):
            report = {"epoch": epoch, "train_loss": 1.0 / epoch, "select.english_dev": 10.0 * epoch,
                      "dev.f1.xa": 5.0 * epoch, "seconds": 3.0, "done": True}
            listener.trial_result(record, report)
        record.metrics = {"epoch": 2, "select.english_dev": 20.0, "f1.avg": 61.0, "f1.xa": 60.0,
                          "best.english_dev": 20.0, "seconds": 9.0}
    records["failed"].error = "CUDA error"
    for record in records.values():
        listener.trial_finished(record)

    runs = {r.tags[schema.TRIAL_ID_TAG]: r for r in children(store, listener, schema.STAGE2)}
    assert {t: r.status for t, r in runs.items()} == {"trial-completed": "FINISHED", "trial-stopped": "KILLED",
                                                      "trial-failed": "FAILED"}
    assert {t: r.tags[schema.STATUS_TAG] for t, r in runs.items()} == {
        "trial-completed": "completed", "trial-stopped": "stopped", "trial-failed": "failed"}
    assert runs["trial-failed"].tags[schema.ERROR_TAG] == "CUDA error"
    assert schema.ERROR_TAG not in runs["trial-completed"].tags
    run = runs["trial-completed"]
    assert run.tags | udpos.tags() == run.tags  # every tag of the cell
    assert run.tags[schema.METRIC_TAG] == "f1" and run.tags[schema.RETRIEVAL_LAYER_TAG] == "last"
    assert run.params[schema.LEARNING_RATE] == "0.003" and run.params["batch_size"] == "32"
    assert run.params["intermediate.learning_rate"] == "0.001" and run.params["intermediate.epochs"] == "3"
    # per-epoch metrics once per epoch, at their epoch; finals once, at the last epoch, never per epoch
    assert run.history["select.english_dev"] == [(1, 10.0), (2, 20.0)]
    assert run.history["dev.f1.xa"] == [(1, 5.0), (2, 10.0)]
    assert run.history["f1.avg"] == [(2, 61.0)] and run.history["best.english_dev"] == [(2, 20.0)]
    assert run.history["seconds"] == [(2, 9.0)]
    assert "epoch" not in run.history and "done" not in run.history


def test_retrieval_evaluation_by_stage_not_by_trial_id(search, plan):
    listener, store, _ = search
    tatoeba = cell(plan, "mb_tatoeba")
    record = TrialRecord("eval-1", tatoeba, None, metrics={"accuracy.xa": 40.0, "accuracy.avg": 40.0})
    assert record.stage == schema.RETRIEVAL
    listener.trial_started(record)
    listener.trial_finished(record)
    (run,) = children(store, listener, schema.RETRIEVAL)
    assert run.status == "FINISHED" and run.tags[schema.METRIC_TAG] == "accuracy"
    assert schema.LEARNING_RATE not in run.params and "batch_size" not in run.params  # nothing is fine-tuned
    assert run.params["intermediate.learning_rate"] == "0.001"
    assert run.history["accuracy.avg"] == [(0, 40.0)]
    # a trial id that happens to start with "retrieval-" does not make a stage-2 trial a retrieval one
    listener.trial_started(TrialRecord("retrieval-looking", cell(plan, "mb_udpos"), 0.001))
    assert [r.tags[schema.TRIAL_ID_TAG] for r in children(store, listener, schema.STAGE2)] == ["retrieval-looking"]


@pytest.mark.parametrize("status, closed", [("KILLED", "KILLED"), ("FAILED", "FAILED"), ("FINISHED", "FAILED")])
def test_open_runs_are_closed_when_the_search_ends(search, plan, status, closed):
    listener, store, _ = search
    listener.trial_started(TrialRecord("cut-off", cell(plan, "mb_udpos", "none"), 0.001))
    listener.stage1_started(next(j for j in plan.jobs if j.trains))
    listener.search_finished(status)
    assert {r.status for r in children(store, listener, schema.STAGE2) + children(store, listener, schema.STAGE1)} \
        == {closed}
    assert store.runs[listener.parent_id].status == status
    assert not [r for r in store.runs.values() if r.status == "RUNNING"]


def test_a_search_through_the_queue_is_complete_when_it_ends(memory_backend, plan, tmp_path):  # noqa: F811
    from xgrid.tracking.queued import JOURNAL_DIR, JOURNAL_FILE, read_journal

    search_dir = tmp_path / "20250101-q"
    search_dir.mkdir()
    writer = open_writer(URI, "e")  # what `xgrid search` uses: every call queued
    listener = TrackingListener(writer)
    listener.search_started(plan, str(search_dir))
    udpos = cell(plan, "mb_udpos")
    for i in range(3):
        record = TrialRecord(f"t{i}", udpos, 0.001, "completed", {"epoch": 1, "f1.avg": 50.0 + i})
        listener.trial_started(record)
        listener.trial_finished(record)
    listener.search_finished("FINISHED")  # closes the writer: everything is in the store

    store = memory_backend[URI]
    parent = store.runs[writer.real_id(listener.parent_id)]
    trials = [r for r in store.runs.values() if r.tags.get(schema.STAGE) == schema.STAGE2]
    assert parent.status == "FINISHED" and writer.pending == 0
    assert sorted(r.history["f1.avg"][-1][1] for r in trials) == [50.0, 51.0, 52.0]
    assert {r.status for r in trials} == {"FINISHED"}
    assert {r.tags[schema.PARENT_TAG] for r in trials} == {parent.run_id}  # the store's id, not the local one
    assert read_journal(search_dir / JOURNAL_DIR / JOURNAL_FILE)[0] == []
