"""Early stopping that compares a trial only with the trials of its own cell.

Ray's ASHA and median rules rank every trial of a Tuner together. One Tuner per target already keeps targets
apart; within a target, comparing the `none` baseline's trials with an intermediate cell's would stop the
baseline for being a baseline and bias every gain. So each cell gets its own instance of the rule.
"""

from __future__ import annotations

from typing import Callable

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler


class PerCellScheduler(FIFOScheduler):
    def __init__(self, make: Callable[[], TrialScheduler], max_epochs: int, cell_key: str = "cell"):
        super().__init__()
        self._make, self._cell_key, self._max_epochs = make, cell_key, max_epochs
        self._by_cell: dict[str, TrialScheduler] = {}
        self.stopped_early: set[str] = set()  # trial ids this scheduler stopped

    def _for(self, trial) -> TrialScheduler:
        cell = trial.config[self._cell_key]
        if cell not in self._by_cell:
            self._by_cell[cell] = self._make()
        return self._by_cell[cell]

    def on_trial_add(self, tune_controller, trial):
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        decision = self._for(trial).on_trial_result(tune_controller, trial, result)
        # ASHA also says STOP when a trial reaches max_t, its last epoch: that is a finish, not an early stop.
        if decision == TrialScheduler.STOP and result.get("epoch", 0) < self._max_epochs:
            self.stopped_early.add(trial.trial_id)
        return decision

    def on_trial_complete(self, tune_controller, trial, result):
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial):
        self._for(trial).on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial):
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"PerCellScheduler: {len(self._by_cell)} cells, {len(self.stopped_early)} trials stopped early"


def make_scheduler(kind: str, metric: str, max_epochs: int, grace_period: int,
                   reduction_factor: float) -> TrialScheduler:
    """The metric is given here, not to TuneConfig: the Optuna searcher already holds it (one place only)."""
    if kind == "none":
        return FIFOScheduler()
    if kind == "asha":
        # time_attr "epoch": the phase reports once per epoch; max_t caps the rungs at the epoch budget.
        make = lambda: AsyncHyperBandScheduler(time_attr="epoch", metric=metric, mode="max", max_t=max_epochs,
                                               grace_period=min(grace_period, max_epochs),
                                               reduction_factor=reduction_factor)
    else:
        make = lambda: MedianStoppingRule(time_attr="epoch", metric=metric, mode="max", grace_period=grace_period,
                                          min_samples_required=2)
    return PerCellScheduler(make, max_epochs)
