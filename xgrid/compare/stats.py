"""Statistics behind ``xgrid compare``.

Input is a results table with one row per (run, language) and the columns
``base_model, target, target_group, policy, intermediate, kind, seed, language, score``
(extra columns are ignored). ``kind`` is one of syntactic / semantic / ner / other /
multi / none; ``none`` rows are the baseline cell (no intermediate training).

The unit of analysis is the *intermediate task*: the question is whether syntactic
intermediate tasks, as a population, help more or less than semantic ones. Seeds are
repeated measurements of a task, and languages are the evaluation languages of one run,
so they are averaged, never treated as independent observations. Concretely, for one
kind:

    value(task, seed) = mean over (base_model, target, policy) cells present of
                        (mean over languages of gain)
    mean(task)        = mean over the task's seeds of value(task, seed)
    mean(kind)        = mean over the kind's tasks of mean(task)

The bootstrap resamples tasks with replacement within each kind and, for each drawn task,
its seeds with replacement (Davison & Hinkley 1997, sec. 3.8). When a group pools several
targets or base models, a seed index is resampled jointly across them (the same
intermediate checkpoint usually feeds every target). The permutation test permutes kind
labels across tasks (``scipy.stats.permutation_test`` on task means).

Caveats worth printing next to any result:
* With very few tasks per kind the percentile interval is too narrow (it cannot see task
  variation it has not sampled); with one task per kind it reflects seed noise only.
  Simulated null coverage of the nominal 95% interval (5 seeds, 4 languages, task sd =
  seed sd): 0.90 with 3 + 3 tasks, 0.93 with 5 + 5, 0.95 with 10 + 10, 0.66 with 1 + 1;
  when task noise dominates, 3 + 3 gives about 0.87, when seed noise dominates about 0.98
  (resampling seeds inside resampled tasks counts seed noise twice). A naive bootstrap
  over rows covers about 0.45-0.5 on the same data.
* The exact permutation test over tasks has a floor on its p-value: with 3 + 3 tasks
  there are only 20 splits, so a two-sided p can never go below 0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sstats

__all__ = [
    "BASELINE_KIND",
    "ContrastResult",
    "compute_gains",
    "hierarchical_bootstrap",
    "permutation_test",
    "contrast_table",
    "kind_summary",
    "task_seed_means",
]

BASELINE_KIND = "none"
REQUIRED_COLUMNS = (
    "base_model",
    "target",
    "target_group",
    "policy",
    "intermediate",
    "kind",
    "seed",
    "language",
    "score",
)
# Columns that identify a baseline: the `none` run this row is compared with.
BASELINE_KEYS = ["base_model", "target", "policy", "seed", "language"]
# Columns that identify one result row; duplicates on these are an error.
RUN_KEYS = ["base_model", "target", "policy", "intermediate", "seed", "language"]
# Cells inside one (task, seed) that are averaged with equal weight (after averaging
# languages inside each), when a group pools several of them.
STRATA = ("base_model", "target", "policy")


@dataclass(frozen=True)
class ContrastResult:
    """Result of :func:`hierarchical_bootstrap`.

    In contrast mode ``estimate = mean_a - mean_b``; in single-kind mode (``kind_b=None``)
    ``estimate = mean_a`` (mean gain over the baseline), ``mean_b`` is NaN and
    ``n_tasks_b`` is 0. ``n_seeds`` is the smallest number of seeds any involved task has
    (the seed count of the grid when it is complete). ``distribution`` holds the bootstrap
    replicates of the estimate (left out of repr and equality).
    """

    estimate: float
    low: float
    high: float
    mean_a: float
    mean_b: float
    n_tasks_a: int
    n_tasks_b: int
    n_seeds: int
    kind_a: str = "syntactic"
    kind_b: Optional[str] = "semantic"
    confidence: float = 0.95
    distribution: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


# ---------------------------------------------------------------------------
# gains
# ---------------------------------------------------------------------------


def _check_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"results table lacks column(s) {missing}; has {list(df.columns)}")


def _raise_on_duplicates(df: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        examples = df.loc[dup, keys].drop_duplicates().head(5)
        listed = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in zip(keys, row))
            for row in examples.itertuples(index=False, name=None)
        )
        n = int(df.loc[dup, keys].drop_duplicates().shape[0])
        raise ValueError(
            f"{n} duplicated {what} key(s) on {keys} (select one run per cell, seed and "
            f"language first, e.g. the best learning rate): {listed}"
        )


def compute_gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Gain of every non-baseline row over its baseline.

    The baseline of a row is the ``kind == "none"`` row with the same base_model, target,
    policy, seed and language. Returns the non-baseline rows (all their columns kept) with
    ``baseline_score`` and ``gain = score - baseline_score``. Rows without a matching
    baseline (or whose baseline score is missing) are dropped; their number is in
    ``result.attrs["unmatched"]``. Rows whose own score is missing are dropped too and
    counted in ``result.attrs["missing_score"]``.

    Raises ValueError when one (base_model, target, policy, intermediate, seed, language)
    occurs more than once, naming the duplicated keys.
    """
    _check_columns(runs, REQUIRED_COLUMNS)
    _raise_on_duplicates(runs, RUN_KEYS, "run")

    is_base = runs["kind"] == BASELINE_KIND
    base = runs.loc[is_base, BASELINE_KEYS + ["score"]].rename(
        columns={"score": "baseline_score"}
    )
    # RUN_KEYS contains BASELINE_KEYS, so `base` has unique keys once the check passed,
    # unless two baseline rows carry different `intermediate` labels.
    _raise_on_duplicates(base, BASELINE_KEYS, "baseline")

    rest = runs.loc[~is_base]
    if "baseline_score" in rest.columns or "gain" in rest.columns:
        rest = rest.drop(columns=[c for c in ("baseline_score", "gain") if c in rest.columns])
    out = rest.merge(base, on=BASELINE_KEYS, how="left", validate="many_to_one")
    out.index = rest.index

    no_base = out["baseline_score"].isna()
    no_score = out["score"].isna() & ~no_base
    out = out.loc[~no_base & ~no_score].copy()
    out["gain"] = out["score"] - out["baseline_score"]
    out.attrs["unmatched"] = int(no_base.sum())
    out.attrs["missing_score"] = int(no_score.sum())
    return out


# ---------------------------------------------------------------------------
# task x seed structure
# ---------------------------------------------------------------------------


def task_seed_means(gains: pd.DataFrame, kind: str) -> pd.Series:
    """value(task, seed) for one kind: a Series indexed by (intermediate, seed).

    Languages are averaged inside each (base_model, target, policy) cell, then the cells
    present are averaged with equal weight.
    """
    _check_columns(gains, ["intermediate", "kind", "seed", "gain"])
    df = gains.loc[(gains["kind"] == kind) & gains["gain"].notna()]
    # Strata that do not vary add nothing to the grouping (and cost a groupby).
    strata = [c for c in STRATA if c in df.columns and df[c].nunique(dropna=False) > 1]
    per_cell = df.groupby(["intermediate", "seed", *strata], sort=True, observed=True)[
        "gain"
    ].mean()
    if not strata:
        return per_cell
    return per_cell.groupby(level=["intermediate", "seed"], sort=True).mean()


@dataclass(frozen=True)
class _KindData:
    tasks: tuple
    values: np.ndarray  # (n_tasks, max_seeds), NaN-padded on the right
    n_seeds: np.ndarray  # (n_tasks,)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def task_means(self) -> np.ndarray:
        return np.nansum(self.values, axis=1) / self.n_seeds

    def mean(self) -> float:
        return float(self.task_means().mean()) if self.n_tasks else float("nan")


def _kind_data(gains: pd.DataFrame, kind: str) -> _KindData:
    ts = task_seed_means(gains, kind)
    if ts.empty:
        return _KindData((), np.empty((0, 0)), np.empty(0, dtype=int))
    wide = ts.unstack("seed")
    # Seeds are exchangeable within a task, so each row can be sorted: np.sort moves the
    # NaNs of missing seeds to the right, giving the right-padded layout used below.
    values = np.sort(wide.to_numpy(dtype=float), axis=1)
    n_seeds = np.isfinite(values).sum(axis=1)
    values = values[:, : n_seeds.max()]
    return _KindData(tuple(wide.index), values, n_seeds)


def _check_disjoint(a: _KindData, b: _KindData, kind_a: str, kind_b: str) -> None:
    shared = set(a.tasks) & set(b.tasks)
    if shared:
        raise ValueError(
            f"intermediate task(s) {sorted(shared)} labelled both {kind_a!r} and {kind_b!r}"
        )


def _bootstrap_kind_means(d: _KindData, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Two-level bootstrap replicates of a kind's mean, shape (n_boot,)."""
    t, s = d.values.shape
    task_idx = rng.integers(0, t, size=(n_boot, t))  # tasks, within the kind
    ns = d.n_seeds[task_idx]  # seeds available to each drawn task
    # Each drawn task draws as many seeds as it has, with replacement; draws beyond its
    # count (padding up to max_seeds) are masked out.
    seed_idx = np.floor(rng.random((n_boot, t, s)) * ns[..., None]).astype(np.intp)
    vals = d.values[task_idx[..., None], seed_idx]
    mask = np.arange(s) < ns[..., None]
    task_means = np.where(mask, vals, 0.0).sum(axis=2) / ns
    return task_means.mean(axis=1)


def _percentile_interval(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    low, high = np.quantile(dist, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def hierarchical_bootstrap(
    gains: pd.DataFrame,
    kind_a: str = "syntactic",
    kind_b: Optional[str] = "semantic",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ContrastResult:
    """Mean gain of ``kind_a`` minus that of ``kind_b`` with a two-level percentile interval.

    ``gains`` should hold one comparison group (e.g. one target and policy); see the module
    docstring for how seeds, languages and pooled cells are averaged. Tasks are resampled
    with replacement within each kind, then each drawn task's seeds with replacement.
    With ``kind_b=None`` the result is the mean gain of ``kind_a`` over the baseline.
    Raises ValueError when a requested kind has no task.
    """
    if kind_b is not None and kind_a == kind_b:
        raise ValueError("kind_a and kind_b must differ")
    a = _kind_data(gains, kind_a)
    b = None if kind_b is None else _kind_data(gains, kind_b)
    return _bootstrap(a, b, kind_a, kind_b, n_boot, confidence, seed)


def _bootstrap(
    a: _KindData,
    b: Optional[_KindData],
    kind_a: str,
    kind_b: Optional[str],
    n_boot: int,
    confidence: float,
    seed: int,
) -> ContrastResult:
    if n_boot < 1:
        raise ValueError("n_boot must be positive")
    if a.n_tasks == 0:
        raise ValueError(f"no {kind_a} tasks in gains")
    if b is not None:
        if b.n_tasks == 0:
            raise ValueError(f"no {kind_b} tasks in gains")
        _check_disjoint(a, b, kind_a, kind_b)
    rng = np.random.default_rng(seed)
    dist = _bootstrap_kind_means(a, n_boot, rng)
    mean_a = a.mean()
    if b is None:
        estimate, mean_b, n_tasks_b, n_seeds = mean_a, float("nan"), 0, int(a.n_seeds.min())
    else:
        dist = dist - _bootstrap_kind_means(b, n_boot, rng)
        mean_b = b.mean()
        estimate, n_tasks_b = mean_a - mean_b, b.n_tasks
        n_seeds = int(min(a.n_seeds.min(), b.n_seeds.min()))
    low, high = _percentile_interval(dist, confidence)
    return ContrastResult(
        estimate=estimate,
        low=low,
        high=high,
        mean_a=mean_a,
        mean_b=mean_b,
        n_tasks_a=a.n_tasks,
        n_tasks_b=n_tasks_b,
        n_seeds=n_seeds,
        kind_a=kind_a,
        kind_b=kind_b,
        confidence=confidence,
        distribution=dist,
    )


# ---------------------------------------------------------------------------
# permutation test
# ---------------------------------------------------------------------------


def _mean_difference(x, y, axis=-1):
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def permutation_test(
    gains: pd.DataFrame,
    kind_a: str = "syntactic",
    kind_b: str = "semantic",
    n_perm: int = 5000,
    seed: int = 0,
) -> float:
    """Two-sided p-value for mean(kind_a) == mean(kind_b), permuting kind labels over tasks.

    Works on task means (mean over seeds of the language-averaged gain), so the statistic
    is the same as :func:`hierarchical_bootstrap`'s estimate. scipy enumerates all splits
    when there are at most ``n_perm`` of them (exact test) and samples otherwise.

    Returns NaN when either kind has fewer than two tasks (scipy needs two per sample; a
    lone task could at best reach p = 2 / (n + 1) anyway). Note the floor in general: the
    smallest attainable p is 2 / C(n_a + n_b, n_a), i.e. 0.1 with 3 + 3 tasks.
    """
    if kind_a == kind_b:
        raise ValueError("kind_a and kind_b must differ")
    a = _kind_data(gains, kind_a)
    b = _kind_data(gains, kind_b)
    return _permutation(a, b, kind_a, kind_b, n_perm, seed)


def _permutation(a: _KindData, b: _KindData, kind_a: str, kind_b: str, n_perm: int, seed: int) -> float:
    if a.n_tasks < 2 or b.n_tasks < 2:
        return float("nan")
    _check_disjoint(a, b, kind_a, kind_b)
    res = _sstats.permutation_test(
        (a.task_means(), b.task_means()),
        _mean_difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_perm,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(res.pvalue)


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def _group_keys(gains: pd.DataFrame, by: Sequence[str]) -> list[str]:
    keys = list(by)
    _check_columns(gains, keys)
    if "policy" in gains.columns and "policy" not in keys and gains["policy"].nunique() > 1:
        keys.append("policy")
    return keys


def _groups(gains: pd.DataFrame, keys: list[str]):
    if not keys:
        yield (), gains
        return
    for key, sub in gains.groupby(keys, sort=True, observed=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), sub


def contrast_table(
    gains: pd.DataFrame,
    by: Sequence[str],
    kind_a: str = "syntactic",
    kind_b: str = "semantic",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    n_perm: int = 5000,
) -> pd.DataFrame:
    """One row per group of ``by`` (plus ``policy`` when several policies are present).

    Columns: by..., mean_a, mean_b, diff, low, high, p_value, n_tasks_a, n_tasks_b,
    n_seeds, note. A group where either kind has no task gets NaN statistics and a note
    such as "no semantic tasks"; a kind with a single task gets a note that its interval
    reflects seed noise only (and p_value is NaN, see :func:`permutation_test`).
    """
    keys = _group_keys(gains, by)
    rows = []
    for key, sub in _groups(gains, keys):
        row = dict(zip(keys, key))
        a = _kind_data(sub, kind_a)
        b = _kind_data(sub, kind_b)
        row.update(
            mean_a=a.mean(),
            mean_b=b.mean(),
            diff=np.nan,
            low=np.nan,
            high=np.nan,
            p_value=np.nan,
            n_tasks_a=a.n_tasks,
            n_tasks_b=b.n_tasks,
            n_seeds=0,
            note="",
        )
        missing = [k for k, d in ((kind_a, a), (kind_b, b)) if d.n_tasks == 0]
        if missing:
            row["note"] = "no " + " or ".join(missing) + " tasks"
            present = [d for d in (a, b) if d.n_tasks]
            if present:
                row["n_seeds"] = int(present[0].n_seeds.min())
        else:
            res = _bootstrap(a, b, kind_a, kind_b, n_boot, confidence, seed)
            row.update(
                diff=res.estimate,
                low=res.low,
                high=res.high,
                p_value=_permutation(a, b, kind_a, kind_b, n_perm, seed),
                n_seeds=res.n_seeds,
            )
            single = [k for k, d in ((kind_a, a), (kind_b, b)) if d.n_tasks == 1]
            if single:
                row["note"] = (
                    "only one " + " and one ".join(single) + " task: interval reflects "
                    "seed noise only, no p-value"
                )
        rows.append(row)
    columns = keys + [
        "mean_a",
        "mean_b",
        "diff",
        "low",
        "high",
        "p_value",
        "n_tasks_a",
        "n_tasks_b",
        "n_seeds",
        "note",
    ]
    return pd.DataFrame(rows, columns=columns)


def kind_summary(
    gains: pd.DataFrame,
    by: Sequence[str],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per group of ``by`` (plus ``policy`` when several) and kind: mean gain over the
    baseline with its single-kind two-level interval. Columns: by..., kind, mean, low,
    high, n_tasks, n_seeds."""
    keys = _group_keys(gains, by)
    rows = []
    for key, sub in _groups(gains, keys):
        kinds = sorted(k for k in sub["kind"].dropna().unique() if k != BASELINE_KIND)
        for kind in kinds:
            if not sub.loc[sub["kind"] == kind, "gain"].notna().any():
                continue
            res = hierarchical_bootstrap(
                sub, kind, None, n_boot=n_boot, confidence=confidence, seed=seed
            )
            rows.append(
                dict(
                    zip(keys, key),
                    kind=kind,
                    mean=res.estimate,
                    low=res.low,
                    high=res.high,
                    n_tasks=res.n_tasks_a,
                    n_seeds=res.n_seeds,
                )
            )
    columns = keys + ["kind", "mean", "low", "high", "n_tasks", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)
