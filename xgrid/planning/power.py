"""Power before spending: how wide the syntactic - semantic interval of a target will be, before the search runs.

`xgrid compare` puts a Welch t-interval on task-level mean gains (`xgrid.statistics.contrast`): each intermediate task
is one observation whose variance is ``task_sd**2 + seed_sd**2 / seeds``. The half-width is then
``t(0.975, df_hat) * se_hat``, both estimated from the tasks a search happens to get, so its expectation has no
closed form (with 2 + 2 tasks the estimated df often falls near 1 and the t quantile explodes). It is computed
here by drawing the sample variances the method will see (chi-square draws, no grid simulated), which is exact
for normal task means; tests/planning/test_power.py checks it against whole simulated grids analysed by compare's
own code (`xgrid.statistics.simulate`).

The assumptions (task sd, seed sd, the precision wanted) come from the space's `power` block
(`xgrid.config.PowerAssumptions`), with defaults from the literature stated there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sstats

__all__ = ["PowerLine", "expected_half_width", "tasks_for_half_width", "power_lines"]

DRAWS = 20_000  # sample-variance draws per design: the expectation to about 1%
MAX_TASKS = 500  # per kind; beyond this the answer is "more than 500"
CONFIDENCE = 0.95


@functools.lru_cache(maxsize=4096)  # the dry run asks for the same designs target after target
def expected_half_width(n_a: int, n_b: int, seeds: int, task_sd: float, seed_sd: float,
                        confidence: float = CONFIDENCE, seed: int = 0) -> float:
    """Mean half-width of the Welch t-interval of mean(kind a) - mean(kind b) over tasks; inf with fewer than
    2 tasks in a kind (no interval at all)."""
    if n_a < 2 or n_b < 2:
        return float("inf")
    sigma2 = task_sd**2 + seed_sd**2 / max(1, seeds)
    rng = np.random.default_rng(seed)
    # Sample variance of n normal task means: sigma^2 * chi2(n - 1) / (n - 1).
    va = sigma2 * rng.chisquare(n_a - 1, DRAWS) / (n_a - 1) / n_a
    vb = sigma2 * rng.chisquare(n_b - 1, DRAWS) / (n_b - 1) / n_b
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = _sstats.t.ppf(0.5 + confidence / 2, df) * np.sqrt(va + vb)
    return float(half.mean())


@functools.lru_cache(maxsize=1024)
def tasks_for_half_width(wanted: float, seeds: int, task_sd: float, seed_sd: float,
                         confidence: float = CONFIDENCE) -> int | None:
    """The fewest tasks per kind (the same number in both) whose expected half-width is at most ``wanted``;
    None when even MAX_TASKS per kind do not get there."""
    if expected_half_width(MAX_TASKS, MAX_TASKS, seeds, task_sd, seed_sd, confidence) > wanted:
        return None
    low, high = 2, MAX_TASKS  # the half-width falls with n: bisect for the first n that is narrow enough
    while low < high:
        mid = (low + high) // 2
        if expected_half_width(mid, mid, seeds, task_sd, seed_sd, confidence) <= wanted:
            high = mid
        else:
            low = mid + 1
    return low


@dataclass(frozen=True)
class PowerLine:
    target: str
    n_syntactic: int
    n_semantic: int
    seeds: int
    task_sd: float
    seed_sd: float
    wanted: float
    half_width: float
    tasks_needed: int | None

    @property
    def can_answer(self) -> bool:
        return self.half_width <= self.wanted

    def text(self) -> str:
        design = f"{self.n_syntactic} syntactic + {self.n_semantic} semantic tasks x {self.seeds} seeds"
        if np.isinf(self.half_width):
            width = "no interval (a kind has fewer than 2 tasks)"
        else:
            width = f"expected 95% half-width +-{self.half_width:.1f} points"
        needed = (f"+-{self.wanted:g} needs {self.tasks_needed} tasks per kind" if self.tasks_needed is not None
                  else f"+-{self.wanted:g} is out of reach even with {MAX_TASKS} tasks per kind")
        verdict = "" if self.can_answer else f"; this space cannot answer its question on {self.target} at +-{self.wanted:g}"
        return (f"{self.target}: {design}: {width} (assumed task sd {self.task_sd:g}, seed sd {self.seed_sd:g}); "
                f"{needed}{verdict}")


def power_lines(plan) -> list[PowerLine]:
    """One line per target of the plan: its syntactic and semantic intermediate tasks (own-data cells are left
    out of compare's contrasts, so they are not counted), the space's seeds and its power assumptions."""
    space = plan.space
    wanted, lines = space.power.half_width, []
    for target in space.targets:
        cells = plan.cells_for(target)
        kinds: dict[str, set[str]] = {"syntactic": set(), "semantic": set()}
        for cell in cells:
            if cell.kind in kinds and not cell.own_data:
                kinds[cell.kind].add(cell.intermediate)
        task_sd, seed_sd = space.power_for(target)
        seeds = len(space.seeds)
        n_a, n_b = len(kinds["syntactic"]), len(kinds["semantic"])
        lines.append(PowerLine(target, n_a, n_b, seeds, task_sd, seed_sd, wanted,
                               expected_half_width(n_a, n_b, seeds, task_sd, seed_sd),
                               tasks_for_half_width(wanted, seeds, task_sd, seed_sd)))
    return lines
