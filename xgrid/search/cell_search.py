"""Ray's OptunaSearch, made readable in optuna-dashboard: each Optuna trial carries its cell as user attributes
(intermediate, kind, seed, base model, target and Tune's trial id), and a trial the per-cell scheduler stopped
early is told to Optuna as PRUNED, not COMPLETE (Ray's searcher would value it at its early epoch as if it had
finished)."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch

from xgrid import tracking_schema as schema
from xgrid.planning.plan import Cell


def cell_attributes(cell: Cell) -> dict[str, Any]:
    return {"cell": cell.id, "intermediate": cell.intermediate, "kind": cell.kind, "seed": cell.seed,
            "base_model": cell.base_model.name, "target": cell.target}


class CellOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, cells: dict[str, Cell], stopped_early: set[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Plain values only: Tune checkpoints the searcher with pickle, which a Cell (its TaskSpecs) would fail.
        self._attributes = {cell_id: cell_attributes(cell) for cell_id, cell in cells.items()}
        self._stopped_early = stopped_early

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        trial = self._ot_trials.get(trial_id)
        if params is not None and trial is not None and params.get("cell") in self._attributes:
            for key, value in self._attributes[params["cell"]].items() | {schema.TRIAL_ID_TAG: trial_id}.items():
                trial.set_user_attr(key, value)
        return params

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error or trial_id not in self._stopped_early or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        from optuna.trial import TrialState

        # PRUNED keeps the last reported epoch's score as the trial's value (Optuna's rule), marked as such.
        self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)
