"""A budgeted search's decisions stay valid under optional stopping: simulated null and non-null grids go round by
round through `decide_look`, the function the search itself calls after each round.

The table (design, false-direction rate, power, share of the fixed design spent) prints with `pytest -s`."""

import math

import numpy as np
import pandas as pd
import pytest

from xgrid.statistics.sequential import (BUDGET_SPENT, OPEN, PRECISE, SEMANTIC_HIGHER, SPENDING, SYNTACTIC_HIGHER,
                                         SequentialDesign, decide_look, simulate_budget, spent)
from xgrid.statistics.simulate import Design

ALPHA = 0.05


@pytest.mark.parametrize("function", SPENDING)
def test_spending_functions_spend_alpha_once_and_never_give_it_back(function):
    ts = np.linspace(0.0, 1.0, 21)
    values = [spent(function, t, ALPHA) for t in ts]
    assert values[0] == 0.0 and math.isclose(values[-1], ALPHA, rel_tol=1e-9)
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_obrien_fleming_keeps_its_alpha_for_the_end_and_pocock_spends_early():
    assert spent("obrien_fleming", 1 / 3, ALPHA) < spent("uniform", 1 / 3, ALPHA) < spent("pocock", 1 / 3, ALPHA)
    with pytest.raises(ValueError, match="valid: pocock"):
        spent("haybittle", 0.5, ALPHA)


def test_looks_and_levels():
    design = SequentialDesign(first_seeds=2, seeds_per_round=2, max_seeds=5, alpha=ALPHA, n_strata=4)
    assert design.looks() == [2, 4, 5]
    assert math.isclose(sum(design.look_alpha()), ALPHA)
    assert all(math.isclose(lv * 4, a) for lv, a in zip(design.levels(), design.look_alpha()))
    assert SequentialDesign(3, 1, 3).looks() == [3]  # no room to add seeds: one look with all of alpha
    assert "Bonferroni" in design.describe() and "2/4/5 seeds" in design.describe()
    with pytest.raises(ValueError, match="max_seeds"):
        SequentialDesign(first_seeds=4, seeds_per_round=1, max_seeds=3)


def gains_of(task_gains: dict[str, tuple[str, list[float]]], target="t", model="m") -> pd.DataFrame:
    """Gains rows: task -> (kind, one gain per seed), the same in two zero-shot languages."""
    rows = [{"base_model": model, "target": target, "target_group": "g", "policy": "english_dev",
             "intermediate": task, "kind": kind, "seed": s, "language": lang, "gain": g}
            for task, (kind, seeds) in task_gains.items() for s, g in enumerate(seeds) for lang in ("xa", "xb")]
    return pd.DataFrame(rows)


def test_a_clear_effect_is_decided_a_tight_null_is_precise_a_wide_one_stays_open():
    design = SequentialDesign(first_seeds=2, seeds_per_round=1, max_seeds=4, half_width=2.0, n_strata=1)
    clear = gains_of({"a": ("syntactic", [8, 8.2]), "b": ("syntactic", [9, 9.1]), "c": ("syntactic", [8.5, 8.4]),
                      "d": ("semantic", [0, 0.1]), "e": ("semantic", [0.4, 0.5]), "f": ("semantic", [-0.2, 0])})
    (decision,) = decide_look(clear, design, 1, [("m", "t")]).values()
    assert decision.status == SYNTACTIC_HIGHER and decision.low > 0 and decision.seeds == 2
    assert decision.level == design.levels()[0]
    flipped = clear.assign(gain=-clear["gain"])
    assert decide_look(flipped, design, 1, [("m", "t")])[("m", "t")].status == SEMANTIC_HIGHER
    tight = gains_of({"a": ("syntactic", [0.2, 0.3]), "b": ("syntactic", [-0.1, 0.0]), "c": ("syntactic", [0.0, 0.1]),
                      "d": ("semantic", [0.1, 0.2]), "e": ("semantic", [-0.2, -0.1]), "f": ("semantic", [0.05, 0.0])})
    assert decide_look(tight, design, 1, [("m", "t")])[("m", "t")].status == PRECISE
    wide = gains_of({"a": ("syntactic", [10, 9]), "b": ("syntactic", [-9, -8]), "c": ("semantic", [5, 6]),
                     "d": ("semantic", [-4, -6])})
    assert decide_look(wide, design, 1, [("m", "t")])[("m", "t")].status == OPEN
    assert decide_look(wide, design, 3, [("m", "t")])[("m", "t")].status == BUDGET_SPENT  # the last look
    # a stratum with no gains at all (nothing finished) stays open rather than failing
    assert decide_look(wide, design, 1, [("m", "other")])[("m", "other")].status == OPEN


NULL_DESIGNS = [
    (Design(2, 2, task_sd=2.0, seed_sd=1.0), SequentialDesign(2, 1, 6, ALPHA, "pocock", 2.0, 3)),
    (Design(4, 4, task_sd=2.0, seed_sd=1.0), SequentialDesign(2, 1, 6, ALPHA, "pocock", 2.0, 3)),
    (Design(4, 4, task_sd=1.0, seed_sd=1.5), SequentialDesign(2, 2, 6, ALPHA, "obrien_fleming", 2.0, 3)),
    (Design(5, 5, task_sd=3.0, seed_sd=0.5), SequentialDesign(1, 1, 5, ALPHA, "uniform", 2.0, 2)),
    (Design(10, 10, task_sd=1.0, seed_sd=1.0), SequentialDesign(2, 1, 6, ALPHA, "pocock", 0.5, 4)),
]


@pytest.mark.parametrize("grid, design", NULL_DESIGNS, ids=lambda d: d.label() if isinstance(d, Design) else None)
def test_false_direction_rate_stays_at_or_under_alpha_with_every_look(grid, design):
    result = simulate_budget(grid, design, n_grids=500, seed=11)
    print(f"\nnull {grid.n_syntactic}+{grid.n_semantic} tasks, task sd {grid.task_sd:g}, seed sd {grid.seed_sd:g} | "
          f"{design.spending}, looks {design.looks()}, {design.n_strata} targets: "
          f"false-direction rate {result['false_direction_rate']:.3f}, spent {result['spent_share']:.2f} of fixed")
    assert result["false_direction_rate"] <= ALPHA
    assert 0 < result["spent_share"] <= 1


def test_looking_every_round_at_the_fixed_95_percent_interval_would_inflate_the_error():
    """What the spending is for: the same grids decided at 0.05 per look and target exceed alpha."""
    naive = SequentialDesign(1, 1, 5, ALPHA * 5 * 3, "uniform", 2.0, 3)  # 5 looks x 3 targets, 0.05 each
    assert all(math.isclose(lv, ALPHA) for lv in naive.levels())
    result = simulate_budget(Design(4, 4, task_sd=2.0, seed_sd=1.0), naive, n_grids=400, seed=11)
    assert result["false_direction_rate"] > 1.5 * ALPHA


def test_a_planted_effect_is_found_and_costs_less_than_the_fixed_design():
    """The micro-benchmark's shape (4 + 4 tasks, measured spread): planted +7.6 and -3.7, and one null."""
    design = SequentialDesign(2, 2, 4, ALPHA, "pocock", 4.0, 3)
    result = simulate_budget(Design(4, 4, task_sd=1.5, seed_sd=1.5), design, n_grids=400, seed=3,
                             effects=[7.6, -3.7, 0.0])
    print(f"\nplanted +7.6 / -3.7 / 0: power {result['power']:.2f}, false-direction rate "
          f"{result['false_direction_rate']:.3f}, spent {result['spent_share']:.2f} of fixed")
    assert result["false_direction_rate"] <= ALPHA
    assert result["power"] > 0.5 and result["spent_share"] < 0.9
