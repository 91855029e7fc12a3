"""Ray Tune's trial callbacks translated into xgrid's search events (`xgrid.events`), with each trial's record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune import Callback

from xgrid.events import SearchListener, TrialRecord
from xgrid.planning.plan import Cell
from xgrid.search.tune_metrics import unpacked
from xgrid.tracking_schema import BEST_PREFIX


def short_error(err: BaseException) -> str:
    """The innermost message of an error that Ray wrapped (task -> actor -> Tune), for a one-line report."""
    cause = err
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


def trial_error(trial) -> str:
    """Why a Tune trial failed. At on_trial_error time Tune has written the error next to the trial locally
    but not yet synced it to storage, which is where get_pickled_error()/get_error() read."""
    import cloudpickle

    pickled, text = getattr(trial, "pickled_error_file", None), getattr(trial, "error_file", None)
    try:
        if pickled and Path(pickled).is_file():
            return short_error(cloudpickle.loads(Path(pickled).read_bytes()))
        if text and Path(text).is_file():
            return short_error(Exception(Path(text).read_text()))
        error = trial.get_pickled_error() or trial.get_error()
    except Exception as err:  # an unreadable error file must not break the search's bookkeeping
        return f"trial failed (its error could not be read: {err})"
    return short_error(error) if error is not None else "trial failed (no error recorded)"


def _has_final_report(record: TrialRecord) -> bool:
    """The phase's last report carries the selected epoch's scores (`best.<policy>`); no earlier one does."""
    return any(key.startswith(f"{BEST_PREFIX}.") for key in record.metrics)


class TuneEvents(Callback):
    """Translate Ray Tune's trial callbacks into listener events, and keep each trial's record."""

    def __init__(self, cells: dict[str, Cell], listener: SearchListener, stopped_early: set[str], stop=None):
        self.cells, self.listener, self.stopped_early = cells, listener, stopped_early
        self.stop = stop  # xgrid.search.interrupt.StopRequest: trials ended by an interrupt are cut off
        self._finished: set[str] = set()  # trial ids whose end the listener has heard
        self.records: dict[str, TrialRecord] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state for restoration; the live listener (a terminal,
        # an MLflow client) belongs to this driver process only and is not part of that state.
        return self.__dict__ | {"listener": SearchListener(), "stop": None}

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id not in self.records:
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, self.cells[trial.config["cell"]],
                                                       float(trial.config["learning_rate"]))
        return self.records[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        # Tune starts a trial again after its worker died (search.max_failures): the same trial, the same run.
        if trial.trial_id in self.records:
            return
        self.listener.trial_started(self._record(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        metrics = unpacked(result)  # the trial reports its metrics packed (`tune_metrics`)
        record.metrics = metrics
        record.history.append(metrics)
        record.node = result.get("node_ip") or record.node  # Tune's: the node of the trial's process
        self.listener.trial_result(record, metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        if trial.trial_id in self.stopped_early:
            record.status = "stopped"
        elif self.stop is not None and self.stop.signal_name is not None and not _has_final_report(record):
            record.status = "cut_off"  # ended by the interrupt before its last epoch's report
        else:
            record.status = "completed"
        self._finish(record)

    def cut_off_unfinished(self) -> None:
        """After an interrupt: Tune ends the trials it stops with no completion callback, so every trial that
        started and did not finish is closed here as cut off."""
        for record in self.records.values():
            if record.trial_id not in self._finished:
                record.status = "cut_off"
                self._finish(record)

    def _finish(self, record: TrialRecord) -> None:
        self._finished.add(record.trial_id)
        self.listener.trial_finished(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record.status = "failed"
        record.error = trial_error(trial)
        self._finish(record)
