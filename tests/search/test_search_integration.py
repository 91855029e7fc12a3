"""A real search end to end: local Ray with 2 CPUs, Ray Tune + Optuna, MLflow on SQLite. What a user would
check: every cell has per-language results, shared stage-1 checkpoints are trained once, a second identical
search trains none, the Optuna study opens, hopeless trials are stopped early, and MLflow holds a parent run
with a child for every training, linked, tagged, finished."""

from collections import Counter

import optuna
import pytest
from mlflow import MlflowClient

from xgrid.config import parse_space
from xgrid.events import SearchListener
from xgrid.planning.plan import build_plan
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search
from xgrid.search.studies import JOURNAL, study_file, study_storage
from tests.search.helpers import tracked_search

pytestmark = pytest.mark.integration

SPACE = {
    "name": "it-search",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk", "mb_deprel"],
    "targets": ["mb_udpos", "mb_tatoeba"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 400,
                              "max_eval_examples": 60},
    # 0.9 is hopeless: per cell, the good rate runs first (values are enqueued in order, one trial at a time),
    # so ASHA stops the hopeless one at the first rung.
    "target_training": {"learning_rate": {"values": [0.003, 0.9]}, "epochs": 3, "max_length": 48,
                        "max_train_examples": 150, "max_eval_examples": 50},
    "search": {"trials_per_cell": 2, "scheduler": "asha", "grace_period": 1},
    "resources": {"max_concurrent_trials": 1},
}


class RayNames(SearchListener):
    """What the Ray dashboard lists while the search runs: the names of Ray tasks and of live actors, read from
    Ray's state API when each target ends."""

    def __init__(self):
        self.tasks, self.actors = set(), set()

    def target_finished(self, target, records):
        import ray
        from ray.util.state import list_actors, list_tasks

        ours = {"address": ray.get_runtime_context().gcs_address, "limit": 10_000, "raise_on_missing_output": False}
        self.tasks |= {t.name for t in list_tasks(**ours)}
        self.actors |= {a.repr_name for a in list_actors(detail=True, **ours)}


@pytest.fixture(scope="module")
def searches(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("runs")
    space = parse_space(SPACE, registry)
    names = RayNames()
    first, first_tracker = tracked_search(space, registry, root, listeners=(names,))
    second, second_tracker = tracked_search(space, registry, root)
    first.tracker, second.tracker, first.ray_names = first_tracker, second_tracker, names
    return first, second, SearchOptions(output_root=root)


def test_every_cell_has_per_language_results(searches, registry):
    first, _, _ = searches
    assert len(first.best) == len(first.plan.cells) == 6
    for row in first.best:
        target = registry.get(row["target"])
        for language in target.languages:
            assert f"{target.metric}.{language}" in row, (row["cell_id"], language)
        assert row["avg_xling"] is not None
    udpos = [r for r in first.best if r["target"] == "mb_udpos"]
    assert all(r["learning_rate"] == 0.003 for r in udpos)  # the hopeless rate never wins
    assert all(r["avg"] > 10 for r in udpos)


def test_stage1_checkpoints_are_trained_once_and_reused(searches):
    first, second, _ = searches
    assert len(first.plan.trained_jobs) == 2  # I = 2 although T = 2 targets use each
    assert first.stage1_trained == 2 and first.stage1_reused == 0
    assert second.stage1_trained == 0 and second.stage1_reused == 2


def test_hopeless_trials_are_stopped_early(searches):
    first, _, _ = searches
    statuses = Counter(r.status for r in first.records["mb_udpos"])
    assert statuses["stopped"] >= 1, statuses
    assert statuses["failed"] == 0


def test_optuna_study_opens_and_holds_every_trial(searches):
    first, _, _ = searches
    assert study_file(first.search_dir).name == JOURNAL and study_file(first.search_dir).is_file()
    storage = study_storage(first.search_dir, read_only=True)
    study = optuna.load_study(study_name="it-search.mb_udpos", storage=storage)
    assert len(study.trials) == 6  # 3 cells x 2 trials; retrieval targets have no study
    assert {t.params["learning_rate"] for t in study.trials} == {0.003, 0.9}
    assert len(optuna.get_all_study_names(storage)) == 1


def test_optuna_trials_say_which_cell_they_belong_to_and_early_stops_are_pruned(searches):
    first, _, _ = searches
    study = optuna.load_study(study_name="it-search.mb_udpos", storage=study_storage(first.search_dir, read_only=True))
    assert study.metric_names == ["select.english_dev"]  # the objective is named in optuna-dashboard
    cells = {c.id: c for c in first.plan.cells}
    for trial in study.trials:
        cell = cells[trial.params["cell"]]
        assert trial.user_attrs["intermediate"] == cell.intermediate
        assert trial.user_attrs["seed"] == cell.seed and trial.user_attrs["kind"] == cell.kind
        assert trial.user_attrs["target"] == "mb_udpos" and trial.user_attrs["base_model"] == "tiny"
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    records = first.records["mb_udpos"]
    assert set(by_id) == {r.trial_id for r in records}
    for record in records:
        expected = {"stopped": optuna.trial.TrialState.PRUNED, "completed": optuna.trial.TrialState.COMPLETE}
        assert by_id[record.trial_id].state == expected[record.status], record.trial_id


def test_ray_tasks_trials_and_actors_are_named_after_their_cells(searches):
    first, _, _ = searches
    names = first.ray_names
    assert {"stage1-mb_chunk-s0", "stage1-mb_deprel-s0"} <= names.tasks
    assert {f"retrieval-mb_tatoeba-{i}-s0-eval" for i in ("none", "mb_chunk", "mb_deprel")} <= names.tasks
    # inline trials share actors Tune reuses across cells: those are named after their target
    assert "stage2-mb_udpos" in names.actors
    trial_folders = {p.name for p in (first.search_dir / "ray" / "mb_udpos").iterdir() if p.is_dir()}
    for record in first.records["mb_udpos"]:
        cell = record.cell
        assert f"mb_udpos-{cell.intermediate}-s{cell.seed}-{record.trial_id}" in trial_folders


def test_results_files_are_written(searches):
    first, _, _ = searches
    assert (first.search_dir / "results.csv").read_text().count("\n") == 7  # header + 6 cells
    assert (first.search_dir / "results.json").is_file() and (first.search_dir / "space.yaml").is_file()


def test_mlflow_parent_child_structure_tags_and_metrics(searches, registry):
    first, second, options = searches
    client = MlflowClient(first.tracker.tracking_uri)
    experiment = client.get_experiment_by_name("it-search")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("stage") == "search"]
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    first_parent = first.tracker.parent_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first_parent]
    by_stage = Counter(r.data.tags["stage"] for r in children)
    assert by_stage == {"stage1": 2, "stage2": 6, "retrieval": 3}
    second_children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == second.tracker.parent_id]
    assert Counter(r.data.tags["stage"] for r in second_children)["stage1"] == 0  # nothing trained the 2nd time
    stopped = [r for r in children if r.data.tags.get("trial_status") == "stopped"]
    assert stopped and {r.info.status for r in stopped} == {"KILLED"}
    for run in children:
        tags = run.data.tags
        for key in ("intermediate", "intermediate_kind", "base_model", "seed", "stage1_key", "selection_policy",
                    "retrieval_layer", "retrieval_pooling", "search_id"):
            assert key in tags, (key, tags["stage"])
        if tags["stage"] == "stage1":
            assert tags["intermediate_kind"] == "syntactic"
            continue
        for key in ("target", "target_format", "target_group", "cell_id", "own_data", "target_metric"):
            assert key in tags
        if tags.get("trial_status") == "completed" or tags["stage"] == "retrieval":
            target = registry.get(tags["target"])
            for language in target.languages:
                assert f"{target.metric}.{language}" in run.data.metrics
            assert f"{target.metric}.avg" in run.data.metrics
            assert f"{target.metric}.avg_xling" in run.data.metrics
    # the selected trial of each cell is tagged: the one results.csv reports
    selected = {r.data.tags["cell_id"]: r.data.tags["trial_id"] for r in children if r.data.tags.get("selected") == "true"}
    assert selected == {row["cell_id"]: row["trial_id"] for row in first.best}
    assert len(selected) == 6
    # only xgrid's own metrics: none of Tune's bookkeeping in the trials' runs
    logged = {name for r in children if r.data.tags["stage"] != "stage1" for name in r.data.metrics}
    assert not logged & {"pid", "timestamp", "time_total_s", "time_this_iter_s", "training_iteration",
                         "time_since_restore", "iterations_since_restore", "epoch"}, logged
    assert all("." in name or name in ("train_loss", "seconds") for name in logged), logged
    trial = next(r for r in children if r.data.tags["stage"] == "stage2" and r.data.tags["trial_status"] == "completed")
    assert float(trial.data.params["learning_rate"]) == 0.003
    history = client.get_metric_history(trial.info.run_id, "select.english_dev")
    assert [m.step for m in history] == [1, 2, 3]  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(first_parent)}
    assert {"space.yaml", "plan.json", "results.json", "results.csv"} <= artifacts
    # Artifacts sit beside the SQLite store, not in ./mlruns of whatever folder the search ran from.
    assert (options.output_root / "mlartifacts" / "it-search").is_dir()
    assert experiment.artifact_location.startswith("file://")


@pytest.mark.slow  # a search of its own (~30-60 s); the module search above stays in the default suite
def test_searched_learning_rate_range_gives_every_cell_its_trials(tmp_path, registry):
    """With a {low, high} range the cell is fixed per enqueued trial and Optuna samples the rate."""
    space = parse_space(SPACE | {"name": "it-range", "intermediates": ["none"], "targets": ["mb_udpos"],
                                 "target_training": SPACE["target_training"] | {"learning_rate": {"low": 1e-3,
                                                                                                  "high": 5e-3}},
                                 "search": {"trials_per_cell": 3, "scheduler": "none"}}, registry)
    outcome = run_search(build_plan(space, registry), SearchOptions(output_root=tmp_path, ray_init={"num_cpus": 2}))
    (records,) = outcome.records.values()
    assert len(records) == 3 and {r.status for r in records} == {"completed"}
    rates = [r.learning_rate for r in records]
    assert all(1e-3 <= lr <= 5e-3 for lr in rates) and len(set(rates)) == 3
    study = optuna.load_study(study_name="it-range.mb_udpos", storage=study_storage(outcome.search_dir, read_only=True))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3


@pytest.mark.slow  # a search of its own (~60 s), with retries of trials that fail every time
def test_failing_trials_are_reported_not_lost(tmp_path, registry):
    """Every trial fails inside its worker (max_length too short for the questions): the search still ends,
    the reason reaches the user, MLflow marks the runs FAILED, and the results files are written."""
    space = parse_space(SPACE | {"name": "it-fail", "intermediates": ["none"], "targets": ["mb_xquad", "mb_udpos"],
                                 "target_training": SPACE["target_training"] | {"max_length": 12,
                                                                                "learning_rate": 0.003},
                                 "search": {"trials_per_cell": 1, "scheduler": "none"}}, registry)
    outcome, tracker = tracked_search(space, registry, tmp_path)
    (qa,) = outcome.records["mb_xquad"]
    assert qa.status == "failed" and "leaves no room for the context" in qa.error
    (tagging,) = outcome.records["mb_udpos"]
    assert tagging.status == "completed"  # one target's failure does not stop the others
    client = MlflowClient(tracker.tracking_uri)
    failed = client.search_runs([tracker.experiment_id], "tags.target = 'mb_xquad'")
    assert [r.info.status for r in failed] == ["FAILED"]
    assert "leaves no room" in failed[0].data.tags["error"]
    assert "leaves no room" in (outcome.search_dir / "results.json").read_text()
