"""The decisions of a budgeted search: look after every round, stop a target once its answer is clear, and keep
the chance of any false direction at or under alpha however many looks there were.

A pre-declared group-sequential design with alpha spending. The looks are at fixed seed counts (the space's first
seeds, then `seeds_per_round` more each round, up to `max_seeds`); the information fraction of look k is its seed
count over `max_seeds`. A Lan-DeMets spending function alpha(t) (Pocock-type by default, or O'Brien-Fleming-type,
or uniform) gives look k the level alpha(t_k) - alpha(t_{k-1}); that level is split evenly over the family's m
strata (base model x target), and a stratum looked at in round k claims a direction only when its Welch
t-interval at confidence 1 - level_k / m excludes 0 (`xgrid.statistics.contrast`, the interval compare prints).

Why it is valid under optional stopping: every (stratum, look) test that could happen has level level_k / m on
its own, whatever came before, and there are at most m tests per look, so the chance that any of them claims a
false direction is at most sum_k level_k = alpha (Bonferroni over looks and strata). That holds for any
correlation between looks and for any rule deciding which strata get more seeds, which the exact Pocock or
O'Brien-Fleming boundaries (computed for a known correlation of z-statistics) would not; the price is some
power. `simulate_budget` runs simulated grids through the same `decide_look` the search calls.

A stratum also stops, with no direction claimed, once that interval is narrower than +-half_width: the answer is
then "no difference larger than half_width". Neither stop can make a false direction, so it costs no alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sstats

from xgrid.statistics import contrast as _contrast
from xgrid.statistics.simulate import Design as GridDesign
from xgrid.statistics.simulate import simulate_runs

__all__ = ["SPENDING", "SequentialDesign", "Decision", "spent", "decide_look", "simulate_budget",
           "SYNTACTIC_HIGHER", "SEMANTIC_HIGHER", "PRECISE", "OPEN", "BUDGET_SPENT", "DECIDED"]

SPENDING = ("pocock", "obrien_fleming", "uniform")
SYNTACTIC_HIGHER, SEMANTIC_HIGHER = "syntactic higher", "semantic higher"
PRECISE = "no difference beyond the half-width"  # the interval is narrower than +-half_width and covers 0
OPEN = "open"
BUDGET_SPENT = "undecided: budget spent"
DECIDED = (SYNTACTIC_HIGHER, SEMANTIC_HIGHER, PRECISE)
STRATUM = ["base_model", "target"]


def spent(function: str, t: float, alpha: float) -> float:
    """Alpha spent by information fraction t (0..1) under a Lan-DeMets spending function."""
    if function not in SPENDING:
        raise ValueError(f"spending {function!r}: valid: {', '.join(SPENDING)}")
    t = min(max(float(t), 0.0), 1.0)
    if t == 0.0:
        return 0.0
    if function == "uniform":
        return alpha * t
    if function == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * t)
    z = _sstats.norm.ppf(1.0 - alpha / 2.0)
    return float(2.0 - 2.0 * _sstats.norm.cdf(z / math.sqrt(t)))


@dataclass(frozen=True)
class SequentialDesign:
    """The looks of a budgeted search and the level each spends, fixed before anything runs."""

    first_seeds: int
    seeds_per_round: int
    max_seeds: int
    alpha: float = 0.05
    spending: str = "pocock"
    half_width: float = 2.0
    n_strata: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.first_seeds <= self.max_seeds:
            raise ValueError(f"first_seeds {self.first_seeds} must be between 1 and max_seeds {self.max_seeds}")
        if self.seeds_per_round < 1 or self.n_strata < 1:
            raise ValueError("seeds_per_round and n_strata must be at least 1")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha {self.alpha} must be in (0, 1)")
        spent(self.spending, 1.0, self.alpha)  # names a known function

    def looks(self) -> list[int]:
        """Seeds per stratum at each look: the first seeds, then seeds_per_round more, the last capped."""
        out = [self.first_seeds]
        while out[-1] < self.max_seeds:
            out.append(min(out[-1] + self.seeds_per_round, self.max_seeds))
        return out

    def look_alpha(self) -> list[float]:
        """The alpha each look spends (they sum to alpha)."""
        cumulative = [spent(self.spending, n / self.max_seeds, self.alpha) for n in self.looks()]
        return [b - a for a, b in zip([0.0, *cumulative[:-1]], cumulative)]

    def levels(self) -> list[float]:
        """Per look, the level of one stratum's test: that look's alpha over the family's strata."""
        return [a / self.n_strata for a in self.look_alpha()]

    def describe(self) -> str:
        levels = ", ".join(f"{lv:.3g}" for lv in self.levels())
        return (f"group-sequential, {self.spending} alpha spending over {len(self.looks())} looks at "
                f"{'/'.join(map(str, self.looks()))} seeds (information = seeds / {self.max_seeds}), total alpha "
                f"{self.alpha:g} split evenly over {self.n_strata} target(s) (Bonferroni over looks and targets: "
                f"valid whatever is stopped when); per-target level by look: {levels}; a target stops when its "
                f"interval at 1 - level excludes 0 or is narrower than +-{self.half_width:g}")


@dataclass(frozen=True)
class Decision:
    """One stratum at one look."""

    base_model: str
    target: str
    round: int
    seeds: int
    diff: float
    low: float
    high: float
    p_value: float
    level: float
    status: str

    @property
    def decided(self) -> bool:
        return self.status in DECIDED

    def interval_text(self) -> str:
        """`+7.62 [+1.28, +13.96]`, or `no interval` (a kind with one task, or nothing to compare yet)."""
        return "no interval" if math.isnan(self.low) else f"{self.diff:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def decide_look(gains: pd.DataFrame, design: SequentialDesign, round_no: int,
                strata: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Decision]:
    """The decision of every stratum looked at in round `round_no` (1-based), from the gains over `none` of its
    seeds so far (`contrast.compute_gains` rows, one policy). A stratum without an interval stays open (a
    kind with one task, or none); after the last look an open stratum is `BUDGET_SPENT`."""
    level = design.levels()[round_no - 1]
    last = round_no == len(design.looks())
    table = _contrast.contrast_table(gains, by=STRATUM, confidence=1.0 - level) if len(gains) else pd.DataFrame()
    found = {(str(r.base_model), str(r.target)): r for r in table.itertuples()} if len(table) else {}
    out = {}
    for stratum in strata:
        row = found.get(tuple(map(str, stratum)))
        diff, low, high, p = ((row.diff, row.low, row.high, row.p_value) if row is not None
                              else (np.nan, np.nan, np.nan, np.nan))
        if np.isfinite(low) and (low > 0 or high < 0):
            status = SYNTACTIC_HIGHER if low > 0 else SEMANTIC_HIGHER
        elif np.isfinite(low) and (high - low) / 2.0 < design.half_width:
            status = PRECISE
        else:
            status = BUDGET_SPENT if last else OPEN
        seeds = int(row.n_seeds) if row is not None else 0
        out[stratum] = Decision(stratum[0], stratum[1], round_no, seeds, float(diff), float(low), float(high),
                                float(p), level, status)
    return out


def simulate_budget(grid: GridDesign, design: SequentialDesign, n_grids: int, seed: int = 0,
                    effects: Sequence[float] | None = None) -> dict[str, float]:
    """`n_grids` simulated searches of `design.n_strata` targets each (the true syntactic - semantic effect of
    target i is `effects[i]`, default `grid.effect` for all), run round by round through `decide_look`.

    Returns the family-wise rate of a false direction (a direction claimed on a target with no effect, or the
    wrong sign), the rate of a correct direction on targets with an effect (power), and the share of the fixed
    design's seeds (every target at max_seeds) the budget spent."""
    m = design.n_strata
    effects = list(effects) if effects is not None else [grid.effect] * m
    if len(effects) != m:
        raise ValueError(f"{len(effects)} effects for {m} strata")
    rng = np.random.default_rng(seed)
    frames = []
    for i, effect in enumerate(effects):
        runs = simulate_runs(GridDesign(grid.n_syntactic, grid.n_semantic, design.max_seeds, grid.task_sd,
                                        grid.seed_sd, effect, grid.resid_sd, grid.baseline_sd), n_grids, rng)
        frames.append(runs.assign(base_model=runs["target"], target=f"t{i}"))  # grid id as the model
    runs = pd.concat(frames, ignore_index=True)
    gains = _contrast.compute_gains(runs[runs["language"] != "en"])
    strata = [(f"sim{g}", f"t{i}") for g in range(n_grids) for i in range(m)]
    open_now, seeds_used, outcome = set(strata), {s: 0 for s in strata}, {}
    for round_no, n_seeds in enumerate(design.looks(), start=1):
        if not open_now:
            break
        keys = pd.MultiIndex.from_tuples(sorted(open_now))
        rows = gains.set_index(STRATUM).index.isin(keys) & (gains["seed"] < n_seeds)
        decisions = decide_look(gains[rows], design, round_no, sorted(open_now))
        for stratum, decision in decisions.items():
            seeds_used[stratum] = n_seeds
            if decision.status != OPEN:
                outcome[stratum] = decision.status
                open_now.discard(stratum)
    effect_of = {f"t{i}": e for i, e in enumerate(effects)}
    false_direction, correct, with_effect = set(), 0, 0
    for (model, target), status in outcome.items():
        truth = effect_of[target]
        claimed = {SYNTACTIC_HIGHER: 1, SEMANTIC_HIGHER: -1}.get(status, 0)
        if claimed and (truth == 0 or np.sign(truth) != claimed):
            false_direction.add(model)
        if truth != 0:
            correct += claimed == np.sign(truth)
    with_effect = sum(e != 0 for e in effects) * n_grids
    return {"false_direction_rate": len(false_direction) / n_grids,
            "power": correct / with_effect if with_effect else float("nan"),
            "spent_share": sum(seeds_used.values()) / (len(strata) * design.max_seeds),
            "grids": n_grids}
