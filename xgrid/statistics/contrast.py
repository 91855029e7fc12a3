"""Statistics behind ``xgrid compare``.

Input is a results table with one row per (run, language) and the columns
``base_model, target, target_group, policy, intermediate, kind, seed, language, score``
(extra columns are ignored). ``kind`` is one of syntactic / semantic / ner / other /
multi / none; ``none`` rows are the baseline cell (no intermediate training).

The unit of analysis is the *intermediate task*: the question is whether syntactic
intermediate tasks, as a population, help more or less than semantic ones. Seeds are
repeated measurements of a task, and languages are the evaluation languages of one run,
so they are averaged, never treated as independent observations. For one kind:

    value(task, seed) = mean over (base_model, target, policy) cells present of
                        (mean over languages of gain)
    mean(task)        = mean over the task's seeds of value(task, seed)
    mean(kind)        = mean over the kind's tasks of mean(task)

The interval of a contrast is Welch's t-interval on the task means (Satterthwaite degrees
of freedom), and its p-value Welch's two-sided t-test; a single kind's mean gain gets the
one-sample t-interval on its task means. Averaging seeds inside a task first makes each
task one observation whose variance already holds its seed noise (task sd^2 + seed sd^2 /
seeds), so the t-interval is exact for normal task means and needs no resampling.

Why not the bootstrap this module used before: a percentile bootstrap over 2-5 tasks per
kind cannot see task variation it has not sampled and was anti-conservative (simulated
null coverage of the nominal 95%: 0.76 with 2 + 2 tasks, 0.82 with 3 + 3, 0.92 with 5 + 5);
the t-interval holds its coverage from 2 + 2 tasks up (tests/statistics/test_coverage.py:
>= 0.93 in every design, task sd 1-3, seed sd 0.5-1.5, 3 seeds).

Assumptions, printed with every result (`METHOD_NOTE`): tasks of a kind are a sample of
that kind's population; task means are roughly normal (with 2-3 tasks per kind nothing
else can be checked); the grid's cells are not confounded with the kind (format, data
size: `xgrid compare` reports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _sstats

__all__ = [
    "BASELINE_KIND",
    "METHOD_NOTE",
    "ContrastResult",
    "adjust_pvalues",
    "compute_gains",
    "contrast",
    "contrast_table",
    "kind_summary",
    "task_means",
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

METHOD_NOTE = (
    "interval: Welch t-interval on task-level mean gains (seeds averaged inside each task, then each "
    "intermediate task one observation); p: Welch two-sided t-test. Assumes the tasks of a kind are a sample "
    "of its population with roughly normal task means; with few tasks the interval is wide, not wrong"
)
ADJUST_METHODS = ("holm", "bh")


@dataclass(frozen=True)
class ContrastResult:
    """Result of :func:`contrast`.

    In contrast mode ``estimate = mean_a - mean_b``; in single-kind mode (``kind_b=None``)
    ``estimate = mean_a`` (mean gain over the baseline), ``mean_b`` is NaN and
    ``n_tasks_b`` is 0. ``n_seeds`` is the smallest number of seeds any involved task has.
    ``low``/``high``/``p_value`` are NaN when the interval is undefined (one task in a kind, or
    no variation between tasks at all); ``note`` then says why.
    """

    estimate: float
    low: float
    high: float
    se: float
    df: float
    p_value: float
    mean_a: float
    mean_b: float
    n_tasks_a: int
    n_tasks_b: int
    n_seeds: int
    kind_a: str = "syntactic"
    kind_b: Optional[str] = "semantic"
    confidence: float = 0.95
    note: str = ""


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
    means: np.ndarray  # (n_tasks,): mean over the task's seeds
    n_seeds: np.ndarray  # (n_tasks,)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def mean(self) -> float:
        return float(self.means.mean()) if self.n_tasks else float("nan")

    def min_seeds(self) -> int:
        return int(self.n_seeds.min()) if self.n_tasks else 0


def _kind_data(gains: pd.DataFrame, kind: str) -> _KindData:
    ts = task_seed_means(gains, kind)
    if ts.empty:
        return _KindData((), np.empty(0), np.empty(0, dtype=int))
    by_task = ts.groupby(level="intermediate", sort=True)
    return _KindData(tuple(by_task.mean().index), by_task.mean().to_numpy(dtype=float),
                     by_task.size().to_numpy(dtype=int))


def _task_level(gains: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """mean(task) and its seed count for every group of ``keys``, kind and task, in one pass (a table of
    thousands of simulated searches is analysed in one call): columns keys..., kind, intermediate, mean, n."""
    df = gains.loc[gains["gain"].notna()]
    # Grouping by a stratum that does not vary inside a group changes nothing, so strata are taken over the
    # whole table.
    strata = [c for c in STRATA if c in df.columns and c not in keys and df[c].nunique(dropna=False) > 1]
    levels = [*keys, "kind", "intermediate", "seed"]
    per_cell = df.groupby([*levels, *strata], sort=True, observed=True, dropna=False)["gain"].mean()
    if strata:
        per_cell = per_cell.groupby(level=levels, sort=True, dropna=False).mean()
    per_task = per_cell.groupby(level=levels[:-1], sort=True, dropna=False).agg(["mean", "size"])
    return per_task.rename(columns={"size": "n"}).reset_index()


def _kind_from(tasks: pd.DataFrame, kind: str) -> _KindData:
    sub = tasks[tasks["kind"] == kind]
    return _KindData(tuple(sub["intermediate"]), sub["mean"].to_numpy(dtype=float), sub["n"].to_numpy(dtype=int))


def _task_groups(gains: pd.DataFrame, keys: list[str]):
    """(key tuple, task-level rows) per group of ``keys``, in sorted key order."""
    tasks = _task_level(gains, keys)
    if not keys:
        yield (), tasks
        return
    for key, sub in tasks.groupby(keys, sort=True, observed=True, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), sub


def task_means(gains: pd.DataFrame, kind: str) -> pd.Series:
    """mean(task) for one kind: one value per intermediate task (seeds averaged)."""
    d = _kind_data(gains, kind)
    return pd.Series(d.means, index=pd.Index(d.tasks, name="intermediate"), name="gain")


def _check_disjoint(a: _KindData, b: _KindData, kind_a: str, kind_b: str) -> None:
    shared = set(a.tasks) & set(b.tasks)
    if shared:
        raise ValueError(
            f"intermediate task(s) {sorted(shared)} labelled both {kind_a!r} and {kind_b!r}"
        )


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


# ---------------------------------------------------------------------------
# t-intervals
# ---------------------------------------------------------------------------


def _t_interval(estimate: float, se: float, df: float, confidence: float) -> tuple[float, float, float]:
    """(low, high, two-sided p of estimate == 0); NaN where the interval is undefined."""
    if not (np.isfinite(se) and np.isfinite(df)) or se <= 0 or df <= 0:
        return float("nan"), float("nan"), float("nan")
    half = float(_sstats.t.ppf(0.5 + confidence / 2.0, df)) * se
    p = float(2.0 * _sstats.t.sf(abs(estimate) / se, df))
    return estimate - half, estimate + half, p


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(se, Satterthwaite df) of mean(a) - mean(b)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    denom = va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)
    df = float((va + vb) ** 2 / denom) if denom > 0 else float("nan")
    return se, df


def _no_interval_note(a: _KindData, b: Optional[_KindData], kind_a: str, kind_b: Optional[str]) -> str:
    single = [k for k, d in ((kind_a, a), (kind_b, b)) if d is not None and d.n_tasks == 1]
    if single:
        return ("only one " + " and one ".join(single) + " task: no interval or p-value (the unit is the "
                "task; one task says nothing about its kind's spread)")
    return "no variation between tasks: no interval or p-value"


def _contrast(a: _KindData, b: Optional[_KindData], kind_a: str, kind_b: Optional[str],
              confidence: float) -> ContrastResult:
    _check_confidence(confidence)
    if a.n_tasks == 0:
        raise ValueError(f"no {kind_a} tasks in gains")
    if b is not None:
        if b.n_tasks == 0:
            raise ValueError(f"no {kind_b} tasks in gains")
        _check_disjoint(a, b, kind_a, kind_b)
    mean_a = a.mean()
    if b is None:
        estimate, mean_b, n_b, n_seeds = mean_a, float("nan"), 0, a.min_seeds()
        if a.n_tasks >= 2:
            se, df = float(a.means.std(ddof=1) / np.sqrt(a.n_tasks)), float(a.n_tasks - 1)
        else:
            se, df = float("nan"), float("nan")
    else:
        mean_b = b.mean()
        estimate, n_b, n_seeds = mean_a - mean_b, b.n_tasks, min(a.min_seeds(), b.min_seeds())
        if a.n_tasks >= 2 and b.n_tasks >= 2:
            se, df = _welch(a.means, b.means)
        else:
            se, df = float("nan"), float("nan")
    low, high, p = _t_interval(estimate, se, df, confidence)
    note = _no_interval_note(a, b, kind_a, kind_b) if np.isnan(low) else ""
    return ContrastResult(estimate=estimate, low=low, high=high, se=se, df=df, p_value=p, mean_a=mean_a,
                          mean_b=mean_b, n_tasks_a=a.n_tasks, n_tasks_b=n_b, n_seeds=n_seeds, kind_a=kind_a,
                          kind_b=kind_b, confidence=confidence, note=note)


def contrast(
    gains: pd.DataFrame,
    kind_a: str = "syntactic",
    kind_b: Optional[str] = "semantic",
    confidence: float = 0.95,
) -> ContrastResult:
    """Mean gain of ``kind_a`` minus that of ``kind_b`` with Welch's t-interval over tasks.

    ``gains`` should hold one comparison group (e.g. one target and policy); see the module
    docstring for how seeds, languages and pooled cells are averaged. With ``kind_b=None`` the
    result is the mean gain of ``kind_a`` over the baseline (one-sample t-interval).
    Raises ValueError when a requested kind has no task.
    """
    if kind_b is not None and kind_a == kind_b:
        raise ValueError("kind_a and kind_b must differ")
    a = _kind_data(gains, kind_a)
    b = None if kind_b is None else _kind_data(gains, kind_b)
    return _contrast(a, b, kind_a, kind_b, confidence)


# ---------------------------------------------------------------------------
# multiplicity
# ---------------------------------------------------------------------------


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Family-wise (Holm 1979) or false-discovery-rate (Benjamini-Hochberg 1995) adjusted p-values.

    NaN entries (tests that could not be made) stay NaN and are not counted in the family.
    """
    if method not in ADJUST_METHODS:
        raise ValueError(f"unknown p-value adjustment {method!r}; use one of {', '.join(ADJUST_METHODS)}")
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    if method == "bh":
        out[ok] = _sstats.false_discovery_control(p[ok], method="bh")
        return out
    values = p[ok]
    m = len(values)
    order = np.argsort(values, kind="stable")
    # Holm: the k-th smallest p times (m - k + 1), made monotone, capped at 1.
    stepped = np.maximum.accumulate(values[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    out[ok] = adjusted
    return out


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def _group_keys(gains: pd.DataFrame, by: Sequence[str]) -> list[str]:
    keys = list(by)
    _check_columns(gains, keys)
    if "policy" in gains.columns and "policy" not in keys and gains["policy"].nunique() > 1:
        keys.append("policy")
    return keys


CONTRAST_COLUMNS = ["mean_a", "mean_b", "diff", "low", "high", "se", "df", "p_value", "n_tasks_a", "n_tasks_b",
                    "n_seeds", "note"]


def contrast_table(
    gains: pd.DataFrame,
    by: Sequence[str],
    kind_a: str = "syntactic",
    kind_b: str = "semantic",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per group of ``by`` (plus ``policy`` when several policies are present).

    Columns: by..., mean_a, mean_b, diff, low, high, se, df, p_value, n_tasks_a, n_tasks_b,
    n_seeds, note. A group where either kind has no task gets NaN statistics and a note such
    as "no semantic tasks"; a kind with a single task gets the estimate and a note, with no
    interval and no p-value (see :class:`ContrastResult`). p-values are unadjusted: see
    :func:`adjust_pvalues` for a family of them.
    """
    keys = _group_keys(gains, by)
    rows = []
    for key, tasks in _task_groups(gains, keys):
        row = dict(zip(keys, key))
        a = _kind_from(tasks, kind_a)
        b = _kind_from(tasks, kind_b)
        row.update(mean_a=a.mean(), mean_b=b.mean(), diff=np.nan, low=np.nan, high=np.nan, se=np.nan,
                   df=np.nan, p_value=np.nan, n_tasks_a=a.n_tasks, n_tasks_b=b.n_tasks, n_seeds=0, note="")
        missing = [k for k, d in ((kind_a, a), (kind_b, b)) if d.n_tasks == 0]
        if missing:
            row["note"] = "no " + " or ".join(missing) + " tasks"
            present = [d for d in (a, b) if d.n_tasks]
            if present:
                row["n_seeds"] = present[0].min_seeds()
        else:
            res = _contrast(a, b, kind_a, kind_b, confidence)
            row.update(diff=res.estimate, low=res.low, high=res.high, se=res.se, df=res.df,
                       p_value=res.p_value, n_seeds=res.n_seeds, note=res.note)
        rows.append(row)
    return pd.DataFrame(rows, columns=keys + CONTRAST_COLUMNS)


def kind_summary(
    gains: pd.DataFrame,
    by: Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per group of ``by`` (plus ``policy`` when several) and kind: mean gain over the
    baseline with its one-sample t-interval over tasks. Columns: by..., kind, mean, low,
    high, n_tasks, n_seeds."""
    keys = _group_keys(gains, by)
    rows = []
    for key, tasks in _task_groups(gains, keys):
        kinds = sorted(k for k in tasks["kind"].dropna().unique() if k != BASELINE_KIND)
        for kind in kinds:
            res = _contrast(_kind_from(tasks, kind), None, kind, None, confidence)
            rows.append(dict(zip(keys, key), kind=kind, mean=res.estimate, low=res.low, high=res.high,
                             n_tasks=res.n_tasks_a, n_seeds=res.n_seeds))
    columns = keys + ["kind", "mean", "low", "high", "n_tasks", "n_seeds"]
    return pd.DataFrame(rows, columns=columns)
