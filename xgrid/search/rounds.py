"""A budgeted search in rounds (`budget:` in the space; the statistics are `xgrid.statistics.sequential`).

The plan holds the worst case (every target at `budget.max_seeds`). Round 1 runs the declared seeds; after each
round the contrast of every stratum (base model x target) still open is looked at, from the selected trial of
each of its cells so far (zero-shot languages, gains over `none`); the open targets then get the next
`seeds_per_round` seeds. The rounds, their decisions and what they spent are kept in the search folder's
`rounds.json`, written after every round: a resumed search (`xgrid search --resume`) finds the rounds it already
finished there and never runs them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from xgrid.config import SearchSpace
from xgrid.events import SearchListener, TrialRecord, selected_trials
from xgrid.folder_state import atomic_write
from xgrid.planning.budget import sequential_design, strata
from xgrid.planning.plan import Plan
from xgrid.statistics import contrast
from xgrid.statistics.sequential import OPEN, Decision, decide_look
from xgrid.tracking_schema import SOURCE_LANGUAGE, final_metric_name

ROUNDS_FILE = "rounds.json"


def gains_of(records: list[TrialRecord], space: SearchSpace) -> pd.DataFrame:
    """Gains over `none` in the zero-shot languages, from the selected trial of every cell (the declared policy),
    in the rows `xgrid.statistics.contrast` reads."""
    policy, rows = space.selection_policy, []
    for record in selected_trials(records, policy).values():
        cell = record.cell
        for language in cell.languages:
            name = final_metric_name(cell.metric, language, policy, policy)
            if language == SOURCE_LANGUAGE or name not in record.metrics:
                continue
            rows.append({"base_model": cell.base_model.name, "target": cell.target, "target_group": cell.target_group,
                         "policy": policy, "intermediate": cell.intermediate, "kind": cell.kind, "seed": cell.seed,
                         "language": language, "score": float(record.metrics[name])})
    if not rows:
        return pd.DataFrame(columns=[*contrast.REQUIRED_COLUMNS, "gain"])
    # A stratum whose `none` baseline has no result yet has no gains: compute_gains drops rows without one.
    return contrast.compute_gains(pd.DataFrame(rows))


@dataclass
class RoundsState:
    """What `rounds.json` holds."""

    method: str
    looks: list[int]
    rounds: list[dict[str, Any]] = field(default_factory=list)  # {"round", "seeds", "targets", "decisions"}
    fixed: dict[str, int] = field(default_factory=dict)  # the worst case: every target at max_seeds
    spent: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""  # "decided", "max_seeds" or "max_gpu_hours"

    @classmethod
    def read(cls, search_dir: Path) -> "RoundsState | None":
        path = Path(search_dir) / ROUNDS_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, search_dir: Path) -> None:
        atomic_write(Path(search_dir) / ROUNDS_FILE, json.dumps(self.__dict__, indent=1, default=float))

    def latest(self) -> dict[tuple[str, str], Decision]:
        out = {}
        for entry in self.rounds:
            for d in entry["decisions"]:
                out[(d["base_model"], d["target"])] = Decision(**d)
        return out


def units(plan: Plan) -> dict[str, int]:
    """What a plan spends: stage-1 checkpoints trained, stage-2 trials, retrieval evaluations."""
    trained = [c for c in plan.cells if c.trains]
    return {"stage1_checkpoints": len(plan.trained_jobs),
            "stage2_trials": sum(plan.trials_of(c) for c in trained),
            "retrieval_evaluations": len(plan.cells) - len(trained)}


def run_rounds(plan: Plan, search_dir: Path, listener: SearchListener,
               run_round: Callable[[Plan, int], None], records: Callable[[], list[TrialRecord]],
               gpu_hours: Callable[[Plan], float | None] | None = None) -> RoundsState:
    """Run the rounds of a budgeted plan. `run_round(round_plan, round_no)` trains and fine-tunes one round's new
    cells (stage 1 then stage 2, through the listener); `records()` returns every trial finished so far.
    `gpu_hours(plan)` estimates a plan's cost, for `budget.max_gpu_hours`."""
    space = plan.space
    design = sequential_design(space)
    seeds = space.planned_seeds()
    state = RoundsState.read(search_dir) or RoundsState(design.describe(), design.looks(), fixed=units(plan))
    finished = {entry["round"] for entry in state.rounds}
    open_targets = list(space.targets)
    ran: set[tuple[str, int]] = set()  # (target, seed) of every round so far
    spent = lambda: units(plan.restricted(lambda c: (c.target, c.seed) in ran))  # noqa: E731
    previous = 0
    for round_no, n_seeds in enumerate(design.looks(), start=1):
        new_seeds, previous = set(seeds[previous:n_seeds]), n_seeds
        sub = plan.restricted(lambda c: c.target in open_targets and c.seed in new_seeds)
        if round_no in finished:  # a resumed search: this round and its decisions are done
            entry = next(e for e in state.rounds if e["round"] == round_no)
            ran |= {(t, s) for t in entry["targets"] for s in new_seeds}
            open_targets = _still_open(entry["decisions"], open_targets)
            listener.round_restored(round_no, sub, [Decision(**d) for d in entry["decisions"]])
            if not open_targets:
                break
            continue
        if not open_targets:
            break
        if round_no > 1 and gpu_hours is not None and space.budget.max_gpu_hours is not None:
            so_far = plan.restricted(lambda c: (c.target, c.seed) in ran or (c.target in open_targets
                                                                               and c.seed in new_seeds))
            cost = gpu_hours(so_far)
            if cost is not None and cost > space.budget.max_gpu_hours:
                state.stopped_by = "max_gpu_hours"
                break
        listener.round_started(round_no, sub)
        run_round(sub, round_no)
        ran |= {(t, s) for t in open_targets for s in new_seeds}
        done = [r for r in records() if r.cell.seed in seeds[:n_seeds]]
        looked = strata(space, open_targets)
        decisions = decide_look(gains_of(done, space), design, round_no, looked)
        entry = {"round": round_no, "seeds": n_seeds, "targets": list(open_targets),
                 "decisions": [d.as_dict() for d in decisions.values()]}
        state.rounds.append(entry)
        open_targets = _still_open(entry["decisions"], open_targets)
        state.spent = spent()
        state.write(search_dir)
        listener.round_finished(round_no, list(decisions.values()), state)
    if not state.stopped_by:
        undecided = [d for d in state.latest().values() if not d.decided]
        state.stopped_by = "max_seeds" if undecided else "decided"
    state.spent = spent()
    state.write(search_dir)
    return state


def _still_open(decisions: list[dict[str, Any]], targets: list[str]) -> list[str]:
    """A target stays open while any of its strata (one per base model) is open."""
    open_now = {d["target"] for d in decisions if d["status"] == OPEN}
    return [t for t in targets if t in open_now]
