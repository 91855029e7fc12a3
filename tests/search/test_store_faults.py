"""A stage-1 checkpoint damaged in the store, for real (its weights file truncated on disk, or one byte in the
middle of its tensors flipped): the next search reports it in one line, moves it to the store's quarantine,
trains it again as an ordinary stage-1 training (progress and MLflow see one), and its cells' results equal
those of the first search. On the original main a truncated file failed every trial of its cells with a
safetensors header error, and a flipped byte went unnoticed (UD-POS en dev 2.9 instead of 60.6).

Tolerance: stage 1 and stage 2 run on CPU with fixed seeds, so the retrained weights are expected bit-identical
(checked through their sha256); the cell's metrics are compared to 1e-6 (absolute), which any real difference
in the encoder would exceed by orders of magnitude."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow import MlflowClient

from xgrid.config import parse_space
from xgrid.running.store import MANIFEST, QUARANTINE
from tests.faults import flip_middle_byte, truncate
from tests.search.helpers import tracked_search

pytestmark = pytest.mark.integration

SPACE = {
    "name": "store-faults",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 150,
                        "max_eval_examples": 40},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


@pytest.fixture(scope="module")
def first(tmp_path_factory, registry):
    """The undamaged search: its store is copied for each fault, so every test starts from it."""
    root = tmp_path_factory.mktemp("first")
    space = parse_space(SPACE, registry)
    outcome, _ = tracked_search(space, registry, root)
    assert outcome.stage1_trained == 1
    (job,) = outcome.plan.trained_jobs
    folder = root / "store" / "checkpoints" / job.key
    return outcome, space, job.key, json.loads((folder / MANIFEST).read_text())["files"], root / "store"




def scores(outcome) -> dict:
    (record,) = outcome.records["mb_udpos"]
    assert record.status == "completed", record.error
    return {name: value for name, value in record.metrics.items() if isinstance(value, float) and "." in name}


# Each case is two whole searches on first use (the undamaged one is shared), about 100 s each on 2 busy CPUs:
# slow. The same damage, done for real to real files, is checked in seconds in tests/running/test_store.py.
@pytest.mark.slow
@pytest.mark.parametrize("damage", [truncate, flip_middle_byte], ids=["truncated", "flipped"])
def test_a_damaged_checkpoint_is_quarantined_retrained_and_gives_the_same_results(first, damage, tmp_path,
                                                                                  registry, capfd):
    before, space, key, files, store = first
    shutil.copytree(store, tmp_path / "store")
    weights = tmp_path / "store" / "checkpoints" / key / "model.safetensors"
    damage(weights)
    capfd.readouterr()

    after, tracker = tracked_search(space, registry, tmp_path)

    assert after.stage1_trained == 1 and after.stage1_reused == 0  # retrained, not reused
    warning = [line for line in capfd.readouterr().err.splitlines() if "stage-1 checkpoint" in line]
    assert len(warning) == 1 and key in warning[0] and "model.safetensors" in warning[0], warning
    (moved,) = (tmp_path / "store" / QUARANTINE).iterdir()
    assert moved.name.startswith(f"{key}-") and str(moved) in warning[0]
    assert (moved / "model.safetensors").stat().st_size == weights.stat().st_size // (2 if damage is truncate else 1)
    # The retrained checkpoint: committed with its manifest, bit-identical weights to the first search's.
    retrained = json.loads((tmp_path / "store" / "checkpoints" / key / MANIFEST).read_text())["files"]
    assert retrained["model.safetensors"] == files["model.safetensors"]
    # Its cell: the same scores as before the damage (see the module docstring for the tolerance).
    expected, got = scores(before), scores(after)
    assert expected and set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    # MLflow heard an ordinary stage-1 training, finished.
    client = MlflowClient(tracker.tracking_uri)
    stage1 = client.search_runs([tracker.experiment_id],
                                f"tags.search_id = '{after.search_dir.name}' and tags.stage = 'stage1'")
    assert [r.info.status for r in stage1] == ["FINISHED"]
