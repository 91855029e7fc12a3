"""`xgrid compare` needs only the reader and writer interfaces: the planted grid read through the in-memory
backend gives exactly the rows MLflow gives, and a search written by `TrackingListener` reads back the same
through either backend (so the listener and the reader agree on every name)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from mlflow import MlflowClient

from xgrid import tracking_schema as schema
from xgrid.compare.report import log_report
from xgrid.compare.runs import CompareError, load_runs
from xgrid.config import parse_space
from xgrid.events import TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.tasks import default_registry
from xgrid.tracking import open_reader, open_writer
from xgrid.tracking.listener import TrackingListener
from tests.compare.test_runs import EXPERIMENT, grid_runs, grid_store  # noqa: F401
from tests.tracking.memory import MemoryRun, MemoryStore, memory_backend  # noqa: F401

SPACE = {"name": "rt", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0], "target_training": {"learning_rate": 0.001}}
GAIN = 5.0  # mb_chunk over none, in every language
TRIALS = ((0.001, 70.0), (0.003, 80.0))  # (learning rate, best.english_dev): the second one is selected


def test_the_planted_grid_reads_the_same_from_memory(grid_store, grid_runs, memory_backend):  # noqa: F811
    reader = open_reader(grid_store.uri)
    exp = reader.find_experiment(EXPERIMENT)
    store = memory_backend.setdefault("memory:grid", MemoryStore({EXPERIMENT: exp.experiment_id}))
    for stage in (schema.SEARCH_STAGE, schema.STAGE1, *schema.CHILD_STAGES):
        for r in reader.stage_runs(exp.experiment_id, stage):
            history = {name: [(0, value)] for name, value in r.metrics.items()}
            store.runs[r.run_id] = MemoryRun(r.run_id, "", exp.experiment_id, r.tags, r.status, history, r.params)

    runs = load_runs(EXPERIMENT, "memory:grid")
    pd.testing.assert_frame_equal(runs, grid_runs)
    assert runs.attrs | {"tracking_uri": grid_store.uri} == grid_runs.attrs
    with pytest.raises(CompareError, match="no experiment 'nope'"):
        load_runs("nope", "memory:grid")
    with pytest.raises(CompareError, match="no memory store"):
        load_runs(EXPERIMENT, "memory:elsewhere")


def _finals(metric: str, languages, score: float, policies) -> dict[str, float]:
    declared = schema.DEFAULT_POLICY
    return {schema.final_metric_name(metric, language, policy, declared): score + (policy != declared)
            for policy in policies for language in (*languages, *schema.AGGREGATES)}


def write_search(uri: str, search_dir) -> TrackingListener:
    """A finished search of the plan, as the driver reports it: two learning rates per trained cell, one
    retrieval evaluation per retrieval cell."""
    registry = default_registry()
    plan = build_plan(parse_space(SPACE, registry), registry)
    listener = TrackingListener(open_writer(uri, "rt"))
    listener.search_started(plan, str(search_dir))
    for cell in plan.cells:
        score = 50.0 + (GAIN if cell.intermediate == "mb_chunk" else 0.0)
        languages = cell.target_task.languages
        if not cell.trains:
            record = TrialRecord(f"r-{cell.id}", cell, None,
                                 metrics=_finals(cell.metric, languages, score, [schema.DEFAULT_POLICY]))
            listener.trial_started(record)
            listener.trial_finished(record)
            continue
        for i, (lr, best) in enumerate(TRIALS):
            record = TrialRecord(f"t-{cell.id}-{i}", cell, lr)
            listener.trial_started(record)
            listener.trial_result(record, {schema.EPOCH: 1, schema.select_metric(schema.ENGLISH_DEV): best})
            record.metrics = {schema.EPOCH: 1, schema.best_metric(schema.ENGLISH_DEV): best} | _finals(
                cell.metric, languages, score if best == TRIALS[-1][1] else 0.0, schema.POLICIES)
            listener.trial_finished(record)
    listener.search_finished("FINISHED")
    return listener


@pytest.fixture(params=["memory", "mlflow"])
def uri(request, memory_backend, tmp_path):  # noqa: F811
    return "memory:rt" if request.param == "memory" else f"sqlite:///{tmp_path / 'mlflow.db'}"


def _artifacts(uri: str, run_id: str, stores) -> set[str]:
    if uri.startswith("memory:"):
        return set(stores[uri].runs[run_id].artifacts)
    return {a.path for a in MlflowClient(uri).list_artifacts(run_id, "compare")}


def test_a_tracked_search_reads_back_through_either_backend(uri, memory_backend, tmp_path):  # noqa: F811
    search_dir = tmp_path / "search"
    search_dir.mkdir()
    listener = write_search(uri, search_dir)
    runs = load_runs("rt", uri)

    assert runs.attrs["metrics"] == {"mb_udpos": "f1", "mb_tatoeba": "accuracy"}  # from the target_metric tag
    assert runs.attrs["parent_run_ids"] == [listener.parent_id]
    assert runs.attrs["experiment_id"] == listener.experiment_id
    counts = runs.attrs["counts"]
    assert (counts["runs"], counts["cells"], counts["selected"], counts["not_selected"]) == (6, 4, 4, 2)
    udpos, tatoeba = runs[runs["target"] == "mb_udpos"], runs[runs["target"] == "mb_tatoeba"]
    assert set(udpos["learning_rate"]) == {TRIALS[-1][0]} and set(udpos["stage"]) == {schema.STAGE2}
    assert tatoeba["learning_rate"].map(math.isnan).all() and set(tatoeba["stage"]) == {schema.RETRIEVAL}
    assert set(udpos["policy"]) == set(schema.POLICIES) and set(tatoeba["policy"]) == {schema.DEFAULT_POLICY}
    assert set(udpos["language"]) == {"en", "xa", "xb", "xc"} and set(tatoeba["language"]) == {"xa", "xb", "xc"}
    declared = runs[runs["policy"] == schema.DEFAULT_POLICY]
    gains = declared.pivot_table(index=["target", "language"], columns="intermediate", values="score")
    assert ((gains["mb_chunk"] - gains["none"]) == GAIN).all()

    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    assert log_report([summary], "rt", uri) == listener.parent_id
    assert "compare/summary.json" in _artifacts(uri, listener.parent_id, memory_backend)
