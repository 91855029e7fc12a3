"""What happens during a search, as events the driver hears: the live progress, the trackers (MLflow) and the
results files all listen. This module sits below both the search (which emits) and the trackers (which
listen), and knows nothing of Ray or of any tracking backend.

Everything is observed in the driver process, so a run's status is always closed by someone alive (a worker
killed by the scheduler cannot leave its MLflow run RUNNING).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from xgrid.planning.plan import Cell, Plan, Stage1Job
from xgrid.tracking_schema import AGGREGATES, RETRIEVAL, STAGE2, best_metric, final_metric_name

# cut_off: running when the search was interrupted (Ctrl-C, SIGTERM); its last report is not a result
Status = Literal["completed", "stopped", "failed", "cut_off"]


@dataclass
class TrialRecord:
    """One stage-2 trial (a learning rate tried on a cell) or one retrieval evaluation of a cell."""

    trial_id: str
    cell: Cell
    learning_rate: float | None  # None for a retrieval evaluation: nothing is trained
    status: Status = "completed"
    metrics: dict[str, Any] = field(default_factory=dict)  # the last report (final metrics when completed)
    history: list[dict[str, Any]] = field(default_factory=list)  # every per-epoch report
    error: str | None = None
    node: str | None = None  # the Ray node that ran it (its IP): tagged on its MLflow run

    @property
    def stage(self) -> str:
        """`stage2` for a fine-tuning trial, `retrieval` for a cell scored straight from its encoder."""
        return STAGE2 if self.cell.trains else RETRIEVAL


def selected_trials(records: list[TrialRecord], policy: str) -> dict[str, TrialRecord]:
    """Cell id -> the trial the declared selection policy picks: of the cell's completed trials with final
    results, the one with the best selected score. The results table, results.csv and the MLflow `selected` tag
    all take it from here. A cell with no such trial has no entry."""
    rank, chosen = best_metric(policy), {}
    for record in records:
        average = final_metric_name(record.cell.metric, AGGREGATES[0], policy, policy)
        if record.status != "completed" or average not in record.metrics:
            continue
        best = chosen.get(record.cell.id)
        if best is None or record.metrics.get(rank, float("-inf")) > best.metrics.get(rank, float("-inf")):
            chosen[record.cell.id] = record
    return chosen


class SearchListener:
    """No-op base: override what you need."""

    def search_started(self, plan: Plan, search_dir: str) -> None: ...
    def search_finished(self, status: str) -> None: ...
    def stage1_started(self, job: Stage1Job) -> None: ...
    def stage1_finished(self, job: Stage1Job, trained: bool, result: dict[str, Any] | None) -> None: ...
    def stage1_failed(self, job: Stage1Job, error: str) -> None: ...
    def trial_started(self, record: TrialRecord) -> None: ...
    def trial_result(self, record: TrialRecord, metrics: dict[str, Any]) -> None: ...
    def trial_finished(self, record: TrialRecord) -> None: ...
    def trial_restored(self, record: TrialRecord) -> None:
        """A trial an earlier driver of this search finished (`xgrid search --resume`): done, not run again; a
        tracker has its run already, a progress counts it as done."""
    def target_finished(self, target: str, records: list[TrialRecord]) -> None: ...
    # A budgeted search (`xgrid.search.rounds`): `plan` holds the round's new cells only; `decisions` are
    # `xgrid.statistics.sequential.Decision`s, `state` the search's `RoundsState` after the round.
    def round_started(self, round_no: int, plan: Plan) -> None: ...
    def round_finished(self, round_no: int, decisions: list[Any], state: Any) -> None: ...
    def round_restored(self, round_no: int, plan: Plan, decisions: list[Any]) -> None:
        """A round an earlier driver of this search finished (--resume): not run again."""


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
