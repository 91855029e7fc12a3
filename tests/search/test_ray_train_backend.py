"""The TorchTrainer path: stage 1 and stage 2 as Ray Train runs of 2 DDP workers (gloo on CPU), metrics reaching
Tune through TuneReportCallback. Same run_phase as the inline path, another TrainContext."""

import pytest

from xgrid.config import parse_space
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search

pytestmark = pytest.mark.integration


def test_search_with_two_ddp_workers_per_trial(tmp_path, registry):
    space = parse_space({
        "name": "it-ddp",
        "base_models": [{"name": "tiny"}],
        "intermediates": ["mb_chunk"],
        "targets": ["mb_udpos"],
        "seeds": [0],
        "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48,
                                  "max_train_examples": 200, "max_eval_examples": 40},
        "target_training": {"learning_rate": 0.003, "epochs": 2, "max_length": 48, "max_train_examples": 100,
                            "max_eval_examples": 40},
        "search": {"trials_per_cell": 1, "scheduler": "none"},
        "resources": {"workers_per_trial": 2, "cpus_per_worker": 1, "max_concurrent_trials": 1,
                      "trial_backend": "ray_train"},
    }, registry)
    outcome = run_search(space, registry, SearchOptions(output_root=tmp_path, ray_init={"num_cpus": 2}))
    assert outcome.stage1_trained == 1
    (record,) = outcome.records["mb_udpos"]
    assert record.status == "completed", record.error
    # Per-epoch reports from rank 0 reached Tune (TuneReportCallback), then the final one with every language.
    assert [h["epoch"] for h in record.history] == [1, 2]
    for language in ("en", "xa", "xb", "xc"):
        assert 0 <= record.metrics[f"f1.{language}"] <= 100
    assert record.metrics["f1.en"] > 5  # it trained: above the all-one-tag floor
    (row,) = outcome.best
    assert row["avg"] is not None
