"""Keep only each Tune trial's latest checkpoint, without the experiment snapshot Tune forces for it.

Tune's own `CheckpointConfig(num_to_keep=1)` deletes a trial's older checkpoint as well, but it also forces a
snapshot of the whole experiment (every trial's state and the pickled searcher with its Optuna study: O(trials))
after every trial checkpoint (`_ExperimentCheckpointManager.on_trial_checkpoint`). A stage-2 trial checkpoints
every epoch, so that is O(trials^2) over a search: the driver's largest cost at 500 no-op trials after Optuna's
SQLite commits (`benchmarks/driver_scale.py`). xgrid never restores a Tune experiment from that snapshot (a resumed
search reads its Optuna study and the trials' own checkpoint folders: `xgrid.search.resume`), so the Tuner keeps
every checkpoint (no forced snapshot; Tune's periodic one, about 5% of the time, stays) and this callback deletes
a trial's previous checkpoint once Tune has the next one. A trial Tune retries resumes from the latest, kept one.
"""

from __future__ import annotations

import logging

from ray.tune import Callback

log = logging.getLogger(__name__)


class KeepLatestCheckpoint(Callback):
    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        # Called before Tune registers `checkpoint`: the trial's latest one is still the previous.
        previous = trial.checkpoint
        if previous is None or previous.path == checkpoint.path:
            return
        try:
            previous.filesystem.delete_dir(previous.path)
        except FileNotFoundError:
            pass
        except OSError as err:  # a checkpoint left behind costs disk, never the search
            log.warning("could not delete %s's previous checkpoint %s: %s", trial, previous.path, err)
