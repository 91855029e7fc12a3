"""What happens during a search, as events the driver hears: the progress display and the MLflow tracker
both listen. Everything is observed in the driver process, so a run's status is always closed by someone
alive (a worker killed by the scheduler cannot leave its MLflow run RUNNING)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ray.tune import Callback

from xgrid.plan import Cell, Stage1Job

Status = Literal["completed", "stopped", "failed"]


@dataclass
class TrialRecord:
    trial_id: str
    cell: Cell
    learning_rate: float
    status: Status = "completed"
    metrics: dict[str, Any] = field(default_factory=dict)  # the last report (final metrics when completed)
    history: list[dict[str, Any]] = field(default_factory=list)  # every per-epoch report
    error: str | None = None


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


class SearchListener:
    """No-op base: override what you need."""

    def search_started(self, plan: Any, search_dir: str) -> None: ...
    def search_finished(self, status: str) -> None: ...
    def stage1_started(self, job: Stage1Job) -> None: ...
    def stage1_finished(self, job: Stage1Job, trained: bool, result: dict[str, Any] | None) -> None: ...
    def stage1_failed(self, job: Stage1Job, error: str) -> None: ...
    def trial_started(self, record: TrialRecord) -> None: ...
    def trial_result(self, record: TrialRecord, metrics: dict[str, Any]) -> None: ...
    def trial_finished(self, record: TrialRecord) -> None: ...
    def target_finished(self, target: str, records: list[TrialRecord]) -> None: ...


class Listeners(SearchListener):
    """Fan-out to several listeners, in order."""

    def __init__(self, *listeners: SearchListener | None):
        self.listeners = [listener for listener in listeners if listener is not None]


def _fan_out(name: str):
    def method(self: Listeners, *args: Any, **kwargs: Any) -> None:
        for listener in self.listeners:
            getattr(listener, name)(*args, **kwargs)
    return method


for _name in [n for n in vars(SearchListener) if not n.startswith("_")]:
    setattr(Listeners, _name, _fan_out(_name))


class TuneEvents(Callback):
    """Translate Ray Tune's trial callbacks into listener events, and keep each trial's record."""

    def __init__(self, cells: dict[str, Cell], listener: SearchListener, stopped_early: set[str]):
        self.cells, self.listener, self.stopped_early = cells, listener, stopped_early
        self.records: dict[str, TrialRecord] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state for restoration; the live listener (a terminal,
        # an MLflow client) belongs to this driver process only and is not part of that state.
        return self.__dict__ | {"listener": SearchListener()}

    def _record(self, trial) -> TrialRecord:
        if trial.trial_id not in self.records:
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, self.cells[trial.config["cell"]],
                                                       float(trial.config["learning_rate"]))
        return self.records[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.listener.trial_started(self._record(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        record.metrics = metrics
        record.history.append(metrics)
        self.listener.trial_result(record, metrics)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record.status = "stopped" if trial.trial_id in self.stopped_early else "completed"
        self.listener.trial_finished(record)

    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record.status = "failed"
        record.error = trial_error(trial)
        self.listener.trial_finished(record)
