"""A retrieval target under `retrieval.protocol: xtreme_r` through a real search (local Ray, Tune + Optuna, MLflow
on SQLite): its cell is fine-tuned on the declared task (mb_qa) as a stage-2 trial with per-epoch selection
scores, and its run carries the target's final retrieval metrics and the protocol tag."""

import pytest
from mlflow import MlflowClient

from xgrid.config import parse_space
from tests.search.helpers import tracked_search

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE = {
    "name": "it-xtreme-r",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none"],
    "targets": ["mb_tatoeba"],
    "seeds": [0],
    "target_training": {"learning_rate": {"values": [0.002]}, "epochs": 2, "batch_size": 16, "max_length": 64,
                        "max_train_examples": 64, "max_eval_examples": 32},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "retrieval": {"protocol": "xtreme_r"},
    "resources": {"max_concurrent_trials": 1},
}


def test_a_retrieval_target_is_fine_tuned_then_scored(tmp_path, registry):
    outcome, tracker = tracked_search(parse_space(SPACE, registry), registry, tmp_path)
    target = registry.get("mb_tatoeba")
    [row] = outcome.best
    assert all(f"{target.metric}.{language}" in row for language in target.languages)
    client = MlflowClient(tracker.tracking_uri)
    experiment = client.get_experiment_by_name(SPACE["name"])
    runs = [r for r in client.search_runs([experiment.experiment_id], max_results=100)
            if r.data.tags.get("target") == "mb_tatoeba"]
    [run] = runs
    tags = run.data.tags
    assert tags["retrieval_protocol"] == "xtreme_r:mb_qa"
    assert tags["stage"] == "stage2"  # trained, not scored straight
    assert {f"{target.metric}.{language}" for language in target.languages} <= set(run.data.metrics)
    # The scheduler's selection score was logged per epoch, on the fine-tuning task's English dev.
    history = client.get_metric_history(run.info.run_id, "select.english_dev")
    assert sorted(m.step for m in history) == [1, 2]
