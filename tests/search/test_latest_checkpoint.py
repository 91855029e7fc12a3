"""KeepLatestCheckpoint in a real Tuner: each trial ends with only its last checkpoint on disk, and Tune no longer
snapshots the whole experiment after every trial checkpoint (what `CheckpointConfig(num_to_keep=1)` forces)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from ray.tune import Callback

from xgrid.search.latest_checkpoint import KeepLatestCheckpoint

pytestmark = pytest.mark.integration

# Many quick checkpoints: Tune's periodic snapshots (every >= 10 s) stay far fewer than one per checkpoint even
# when a loaded machine slows the run several times over.
TRIALS, EPOCHS = 3, 20


def reporting_trainable(config):
    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "epoch").write_text(str(epoch))
            tune.report({"epoch": epoch, "score": config["x"] * epoch}, checkpoint=tune.Checkpoint.from_directory(folder))


class CountSnapshots(Callback):
    """A stateful Tune callback: Tune asks for its state at every experiment snapshot."""

    def __init__(self):
        self.snapshots = 0

    def get_state(self):
        self.snapshots += 1
        return {"snapshots": self.snapshots}

    def set_state(self, state):
        pass


def run_tuner(tmp_path: Path, callbacks, num_to_keep):
    import ray
    from ray import tune

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        tuner = tune.Tuner(
            reporting_trainable, param_space={"x": tune.grid_search(list(range(TRIALS)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(name="keep", storage_path=str(tmp_path), verbose=0, callbacks=callbacks,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep)))
        results = tuner.fit()
    finally:
        ray.shutdown()
    return results


def test_each_trial_keeps_only_its_last_checkpoint_and_no_snapshot_is_forced(tmp_path):
    counter = CountSnapshots()
    results = run_tuner(tmp_path, [KeepLatestCheckpoint(), counter], num_to_keep=None)
    assert not results.errors
    trial_dirs = [p for p in (tmp_path / "keep").iterdir() if p.is_dir() and p.name.startswith("reporting")]
    assert len(trial_dirs) == TRIALS
    for trial_dir in trial_dirs:
        kept = sorted(trial_dir.glob("checkpoint_*"))
        assert len(kept) == 1, kept
        assert (kept[0] / "epoch").read_text() == str(EPOCHS)  # the latest, the one a retry resumes from
    for result in results:
        assert Path(result.checkpoint.path, "epoch").read_text() == str(EPOCHS)
    # Periodic snapshots only (every >= 10 s, plus start and end), not one per trial checkpoint (60 of them here).
    assert counter.snapshots < TRIALS * EPOCHS / 2, counter.snapshots


def test_tunes_num_to_keep_forces_a_snapshot_per_checkpoint(tmp_path):
    """The reference the callback replaces: with num_to_keep=1 Tune snapshots after every trial checkpoint. If a
    Ray upgrade stops doing that, num_to_keep=1 may come back (and this test says so)."""
    counter = CountSnapshots()
    results = run_tuner(tmp_path, [counter], num_to_keep=1)
    assert not results.errors
    # At least one per loop step in which a trial checkpointed: the 2 concurrent trials' may share one.
    assert counter.snapshots >= TRIALS * EPOCHS / 2, counter.snapshots
