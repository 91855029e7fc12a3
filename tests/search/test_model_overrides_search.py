"""A real search of two base models, each with its own settings (`model_overrides`): local Ray with 2 CPUs, Tune +
Optuna, MLflow on SQLite. What a user would check: each model's trials ran at its own learning rates and epochs,
each model's stage-1 checkpoint was trained with its own settings, each model has its own Optuna study, and
`xgrid status` counts the planned trials of both."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient

from xgrid.config import parse_space
from xgrid.search.status import search_status
from xgrid.search.studies import JOURNAL, study_file, study_storage
from tests.search.helpers import tracked_search

pytestmark = pytest.mark.integration

SPACE = {
    "name": "per-model",
    "base_models": [{"name": "tiny"}, {"name": "tiny_b"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": {"values": [0.003, 0.01]}, "epochs": 2, "max_length": 48,
                        "max_train_examples": 100, "max_eval_examples": 40},
    "model_overrides": {"tiny_b": {"intermediate_training": {"learning_rate": 0.002},
                                   "target_training": {"learning_rate": 0.005, "epochs": 1}}},
    "search": {"trials_per_cell": 2, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, registry):
    root = tmp_path_factory.mktemp("runs")
    outcome, _ = tracked_search(parse_space(SPACE, registry), registry, root)
    return outcome, root


def test_each_model_trains_at_its_own_rates_and_epochs(searched):
    outcome, _ = searched
    records = outcome.records["mb_udpos"]
    by_model = {m: [r for r in records if r.cell.base_model.name == m] for m in ("tiny", "tiny_b")}
    assert len(by_model["tiny"]) == 2 * 2 and len(by_model["tiny_b"]) == 2 * 1
    assert {r.learning_rate for r in by_model["tiny"]} == {0.003, 0.01}
    assert {r.learning_rate for r in by_model["tiny_b"]} == {0.005}
    assert all(r.status == "completed" for r in records), [r.error for r in records]
    assert {len(r.history) for r in by_model["tiny"]} == {2} and {len(r.history) for r in by_model["tiny_b"]} == {1}


def test_each_model_has_its_own_optuna_study(searched):
    outcome, _ = searched
    assert study_file(outcome.search_dir) == outcome.search_dir.absolute() / JOURNAL
    assert study_file(outcome.search_dir).is_file()
    storage = study_storage(outcome.search_dir, read_only=True)
    assert sorted(optuna.get_all_study_names(storage)) == ["per-model.mb_udpos.tiny", "per-model.mb_udpos.tiny_b"]
    b = optuna.load_study(study_name="per-model.mb_udpos.tiny_b", storage=storage)
    assert {t.user_attrs["base_model"] for t in b.trials} == {"tiny_b"} and len(b.trials) == 2


def test_stage1_runs_log_each_models_own_settings(searched):
    outcome, root = searched
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("per-model")
    stage1 = {r.data.tags["base_model"]: r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("stage") == "stage1"}
    assert stage1["tiny"].data.params["learning_rate"] == "0.003"
    assert stage1["tiny_b"].data.params["learning_rate"] == "0.002"
    assert stage1["tiny"].data.tags["stage1_key"] != stage1["tiny_b"].data.tags["stage1_key"]
    assert {r.info.status for r in stage1.values()} == {"FINISHED"}


def test_status_counts_both_models_trials(searched):
    outcome, root = searched
    status = search_status(outcome.search_dir, tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (udpos,) = [t for t in status.targets if t.target == "mb_udpos"]
    assert (udpos.planned, udpos.completed, udpos.left, udpos.state) == (6, 6, 0, "done")
