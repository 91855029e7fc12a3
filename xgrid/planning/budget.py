"""A space's budget as a sequential design (`xgrid.statistics.sequential`), and what the dry run says of it: the
looks, the worst case (every target at `budget.max_seeds`) and the expected share of it a search spends,
simulated under the space's `power` assumptions."""

from __future__ import annotations

from dataclasses import dataclass

from xgrid.config import SearchSpace
from xgrid.statistics.sequential import SequentialDesign, simulate_budget
from xgrid.statistics.simulate import Design

SIMULATED_GRIDS = 300  # per scenario: the expected share to about +-0.02


def sequential_design(space: SearchSpace) -> SequentialDesign:
    budget = space.budget
    return SequentialDesign(first_seeds=len(space.seeds), seeds_per_round=budget.seeds_per_round,
                            max_seeds=budget.max_seeds, alpha=budget.alpha, spending=budget.spending,
                            half_width=budget.half_width, n_strata=len(space.base_models) * len(space.targets))


def strata(space: SearchSpace, targets: list[str] | None = None) -> list[tuple[str, str]]:
    """(base model, target) pairs: the family the budget's alpha is split over."""
    return [(m.name, t) for m in space.base_models for t in (targets if targets is not None else space.targets)]


def stratum_label(space: SearchSpace, base_model: str, target: str) -> str:
    """A target's name in tags and tables, with its base model when the space has several."""
    return target if len(space.base_models) == 1 else f"{base_model}:{target}"


def spend_text(spent: dict[str, int], fixed: dict[str, int]) -> str:
    """What a budgeted search's rounds spent against the fixed design (every target at max_seeds), as the search's
    summary and `xgrid compare` print it."""
    parts = [f"{spent.get(k, 0)} of {v} {k.replace('_', ' ')}" for k, v in fixed.items()]
    units = ("stage2_trials", "retrieval_evaluations")
    both = sum(spent.get(k, 0) for k in units) / max(1, sum(fixed.get(k, 0) for k in units))
    trials = spent.get("stage2_trials", 0) / max(1, fixed.get("stage2_trials", 0))
    return (f"{', '.join(parts)} of the fixed design (every target at max_seeds): stage-2 trials {trials:.0%}, "
            f"trials and evaluations {both:.0%}")


@dataclass(frozen=True)
class ExpectedSpend:
    null_share: float  # of the worst case's seeds, when no target has an effect
    effect_share: float  # when every target has an effect of twice the half-width
    effect: float
    effect_power: float


def expected_spend(space: SearchSpace, n_syntactic: int, n_semantic: int) -> ExpectedSpend | None:
    """The share of the worst case a search is expected to spend, simulated through the decision code with the
    space's `power` block (task sd, seed sd of its first target). None without a budget or without 2 + 2 tasks."""
    if space.budget is None or min(n_syntactic, n_semantic) < 2:
        return None
    design = sequential_design(space)
    task_sd, seed_sd = space.power_for(space.targets[0])
    grid = Design(n_syntactic, n_semantic, task_sd=task_sd, seed_sd=seed_sd)
    effect = 2 * space.budget.half_width
    null = simulate_budget(grid, design, SIMULATED_GRIDS, seed=0)
    planted = simulate_budget(grid, design, SIMULATED_GRIDS, seed=0, effects=[effect] * design.n_strata)
    return ExpectedSpend(null["spent_share"], planted["spent_share"], effect, planted["power"])
