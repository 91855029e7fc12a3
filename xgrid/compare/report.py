"""The comparison behind `xgrid compare`: do syntactic and semantic intermediate tasks diverge?

`build_report` turns the rows of `xgrid.compare.runs.load_runs` into gains over the ``none`` baseline and the
contrast syntactic - semantic, by target, by target group and by (target, language), under every selection
policy present (RESEARCH pitfall 1: English dev is zero-shot, target dev an oracle; both are reported). All the
statistics come from `xgrid.statistics.contrast` (Welch t-intervals over intermediate tasks, `stats.METHOD_NOTE`).

The estimand is zero-shot transfer: by default gains are averaged over the evaluated languages other than English
(the language every target's training data is in); ``languages="all"`` or a list of languages says otherwise,
and every table, file and figure uses the same languages.

The answer (``headline``) reads the by-target contrasts of one policy (and base model) as one family of tests:
their p-values are adjusted together (Holm by default, or Benjamini-Hochberg), and a direction is claimed only
where the adjusted p is below 0.05 and the interval excludes 0. Group and per-language rows are descriptive.

Cells left out of every contrast, summary and heatmap, and listed:
- own data (``flagged``): the intermediate task is the target's own English training data, not transfer;
- degenerate (``degenerate``): a constant predictor (the same score in every language), a score at or below the
  target's chance (`TaskSpec.chance`) over the chosen languages, a stage-1 checkpoint whose own English dev is at
  its task's chance, or a baseline that did not learn (English at chance). A target whose baseline is degenerate,
  or where a kind has fewer than 2 tasks left, gets no direction.
The report also shows each intermediate task's format and English training size beside its gain, and says when
the kind is confounded with the format (or the training size). When the experiment holds several base models,
every table is split by base model (pooling encoders of different sizes would answer a different question).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xgrid.statistics import contrast as stats
from xgrid.compare.plots import KIND_ORDER
from xgrid.compare.runs import CompareError, open_experiment, task_spec as _spec
from xgrid import tracking_schema as schema
from xgrid.tracking import open_writer

__all__ = ["Report", "build_report", "write_report", "log_report", "select_languages", "KIND_A", "KIND_B",
           "KIND_ORDER", "ALL_GROUPS", "ZERO_SHOT", "ALL_LANGUAGES", "ADJUST_METHODS"]

KIND_A, KIND_B = "syntactic", "semantic"
ALL_GROUPS = "(all)"
ARTIFACT_DIR = "compare"
CELL_KEYS = ["base_model", "target", "target_group", "policy", "intermediate", "kind", "seed"]
# What identifies one (cell, policy): the unit a degenerate flag applies to.
DEGENERATE_KEYS = ["base_model", "target", "policy", "intermediate", "kind", "seed"]
SOURCE_LANGUAGE = schema.SOURCE_LANGUAGE
ZERO_SHOT, ALL_LANGUAGES = "zero-shot", "all"
ADJUST_METHODS = stats.ADJUST_METHODS
ALPHA = 0.05
CONSTANT_TOL = 1e-6  # scores closer than this in every language: one prediction for every input
CHANCE_MARGIN = 1.0  # points above chance still read as "learned nothing" (0-100 scale)
MIN_TASKS = 2  # a kind with fewer tasks says nothing about its population

_RENAME = {"mean_a": f"mean_{KIND_A}", "mean_b": f"mean_{KIND_B}", "n_tasks_a": f"n_{KIND_A}",
           "n_tasks_b": f"n_{KIND_B}"}
DEGENERATE_COLUMNS = [*DEGENERATE_KEYS, "cell_id", "run_id", "baseline", "reason", "detail"]
TASK_COLUMNS = ["target", "intermediate", "kind", "format", "train_size", "mean_gain", "n_seeds",
                "degenerate_seeds"]


@dataclass
class Report:
    experiment: str
    runs: pd.DataFrame  # load_runs rows at the chosen languages (all cells, left-out ones included)
    gains: pd.DataFrame  # compute_gains rows used by the contrasts (own-data and degenerate cells left out)
    flagged: pd.DataFrame  # own-data cells: one row per cell and policy, mean gain over languages
    contrast_by_target: pd.DataFrame  # with p_adjusted (the family: targets of one policy and base model)
    contrast_by_group: pd.DataFrame
    contrast_by_language: pd.DataFrame
    kinds: pd.DataFrame  # stats.kind_summary per target: mean gain of every kind with its interval
    matrices: dict[str, pd.DataFrame]  # target -> language x intermediate mean gain (heatmap policy)
    matrix_policy: dict[str, str]  # target -> the policy its heatmap shows (the declared one)
    task_kinds: dict[str, str]  # intermediate -> kind
    metrics: dict[str, str]  # target -> primary metric
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # the answer in a few lines, one per policy (and base model)
    parent_run_id: str | None = None
    languages: dict[str, list[str]] = field(default_factory=dict)  # target -> the languages averaged
    language_mode: str = ZERO_SHOT  # zero-shot / all / the list asked for
    adjust: str = "holm"
    degenerate: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DEGENERATE_COLUMNS))
    tasks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TASK_COLUMNS))
    searches: list[str] = field(default_factory=list)  # the search ids read
    search_ids: list[str] = field(default_factory=list)  # every search id of the experiment, oldest first
    # search id -> a budgeted search's rounds (`xgrid.compare.runs.budget_of`): its sequential decisions
    budget: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def languages_label(self) -> str:
        """What the header and summary say of the languages: `zero-shot (without en): xa, xb`."""
        langs = _languages_ordered({l for ls in self.languages.values() for l in ls})
        mode = {ZERO_SHOT: f"zero-shot (every evaluated language but {SOURCE_LANGUAGE})",
                ALL_LANGUAGES: "all evaluated languages"}.get(self.language_mode, "chosen")
        return f"{mode}: {', '.join(langs) or '-'}"


# ---------------------------------------------------------------------------------------------------------------
# the registry: chance, formats and training sizes
# ---------------------------------------------------------------------------------------------------------------


def _chance(task: str) -> float | None:
    spec = _spec(task)
    return float(spec.chance) if spec is not None else None


@lru_cache(maxsize=None)
def _train_size(task: str) -> int | None:
    """English training examples: the task's declared size, else counted for an embedded task, else unknown.
    The embedded tasks' sizes do not depend on the micro-benchmark seed (only their content does)."""
    spec = _spec(task)
    if spec is None:
        return None
    try:
        from xgrid.data.sources import LoadContext
        from xgrid.planning.cost import train_size

        return train_size(spec, LoadContext(microbench_seed=0))
    except Exception:  # a task without English training data (Tatoeba), a source that cannot load here
        return None


def _parts(intermediate_tasks: str) -> list[str]:
    return [t for t in str(intermediate_tasks or "").split(",") if t and t != stats.BASELINE_KIND]


def _task_format(intermediate_tasks: str) -> str:
    specs = [_spec(t) for t in _parts(intermediate_tasks)]
    if not specs or any(s is None for s in specs):
        return "?"
    return "+".join(sorted({s.format for s in specs}))


def _task_size(intermediate_tasks: str) -> int | None:
    sizes = [_train_size(t) for t in _parts(intermediate_tasks)]
    return sum(sizes) if sizes and all(s is not None for s in sizes) else None


# ---------------------------------------------------------------------------------------------------------------
# languages
# ---------------------------------------------------------------------------------------------------------------


def select_languages(runs: pd.DataFrame, languages: str = ZERO_SHOT) -> dict[str, list[str]]:
    """target -> the languages its gains are averaged over: ``zero-shot`` (every evaluated language but English),
    ``all``, or a comma list (each target keeps those it was evaluated in). CompareError for a language no run
    was evaluated in, naming the languages present."""
    present = {t: sorted(set(sub["language"])) for t, sub in runs.groupby("target", sort=True)}
    every = _languages_ordered({l for ls in present.values() for l in ls})
    mode = (languages or "").strip()
    if mode == ZERO_SHOT:
        return {t: [l for l in ls if l != SOURCE_LANGUAGE] for t, ls in present.items()}
    if mode == ALL_LANGUAGES:
        return present
    wanted = list(dict.fromkeys(l.strip() for l in mode.split(",") if l.strip()))
    if not wanted:
        raise CompareError(f"--languages {languages!r}: give {ZERO_SHOT}, {ALL_LANGUAGES} or a comma list of "
                           f"languages; the runs have: {', '.join(every)}")
    unknown = [l for l in wanted if l not in every]
    if unknown:
        raise CompareError(f"--languages: no run was evaluated in {', '.join(map(repr, unknown))}; the runs have: "
                           f"{', '.join(every)}")
    return {t: [l for l in wanted if l in ls] for t, ls in present.items()}


def _language_mode(languages: str) -> str:
    mode = (languages or "").strip()
    return mode if mode in (ZERO_SHOT, ALL_LANGUAGES) else ",".join(l.strip() for l in mode.split(",") if l.strip())


def _at_languages(runs: pd.DataFrame, chosen: dict[str, list[str]]) -> pd.DataFrame:
    keep = pd.Series(False, index=runs.index)
    for target, langs in chosen.items():
        keep |= (runs["target"] == target) & runs["language"].isin(langs)
    return runs.loc[keep]


# ---------------------------------------------------------------------------------------------------------------
# degenerate cells
# ---------------------------------------------------------------------------------------------------------------


def _cell_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, policy): its identity, run and stage-1 key."""
    extra = [c for c in ("cell_id", "run_id", "stage1_key") if c in runs.columns]
    return runs[DEGENERATE_KEYS + extra].drop_duplicates(DEGENERATE_KEYS).set_index(DEGENERATE_KEYS)


def _constant_cells(runs: pd.DataFrame) -> dict[tuple, str]:
    """(a) one score in every evaluated language (>= 2): a model that predicts one thing for every input."""
    spread = runs.groupby(DEGENERATE_KEYS, sort=True)["score"].agg(["min", "max", "count"])
    hit = spread[(spread["count"] >= 2) & ((spread["max"] - spread["min"]).abs() < CONSTANT_TOL)]
    return {key: f"constant predictor: {row['min']:.4g} in all {int(row['count'])} languages"
            for key, row in hit.iterrows()}


def _chance_cells(chosen_runs: pd.DataFrame) -> dict[tuple, str]:
    """(b) the mean over the chosen languages at or below the target's chance (+ margin)."""
    out = {}
    means = chosen_runs.groupby(DEGENERATE_KEYS, sort=True)["score"].mean()
    for key, mean in means.items():
        chance = _chance(key[1])
        if chance is not None and mean <= chance + CHANCE_MARGIN:
            out[key] = f"at chance: mean {mean:.2f} over the chosen languages, chance {chance:.3g}"
    return out


def _baseline_unlearned(runs: pd.DataFrame) -> dict[tuple, str]:
    """(d) a baseline whose English score is at or below chance (+ margin): the target was never learned, so
    every gain over it measures the intermediate task's rescue, not transfer."""
    out = {}
    english = runs[(runs["kind"] == stats.BASELINE_KIND) & (runs["language"] == SOURCE_LANGUAGE)]
    for key, score in english.groupby(DEGENERATE_KEYS, sort=True)["score"].mean().items():
        chance = _chance(key[1])
        if chance is not None and score <= chance + CHANCE_MARGIN:
            out[key] = f"baseline did not learn: English {score:.2f}, chance {chance:.3g}"
    return out


def _stage1_score(record: dict[str, Any], task: str, metric: str, single: bool) -> float | None:
    metrics = record.get("metrics") or {}
    names = ([metric] if single else []) + [schema.intermediate_dev_metric(task, metric)]
    for name in names:
        value = metrics.get(name)
        if value is not None and not math.isnan(float(value)):
            return float(value)
    return None


def _stage1_at_chance(record: dict[str, Any]) -> str | None:
    """(c) why a stage-1 checkpoint learned nothing (a task of it at chance on its own English dev), or None."""
    tasks = [t for t in record.get("tasks") or [] if t]
    for task in tasks:
        spec = _spec(task)
        if spec is None:
            continue
        score = _stage1_score(record, task, spec.metric, single=len(tasks) == 1)
        if score is not None and score <= spec.chance + CHANCE_MARGIN:
            return (f"stage-1 checkpoint at chance: {task} English dev {spec.metric} {score:.2f}, chance "
                    f"{spec.chance:.3g} (run {record.get('run_id')})")
    return None


def _stage1_cells(cells: pd.DataFrame, stage1: dict[str, dict[str, Any]]) -> dict[tuple, str]:
    if "stage1_key" not in cells.columns or not stage1:
        return {}
    verdicts = {key: _stage1_at_chance(record) for key, record in stage1.items()}
    return {cell: verdicts[key] for cell, key in cells["stage1_key"].items() if verdicts.get(key)}


def find_degenerate(runs: pd.DataFrame, chosen_runs: pd.DataFrame,
                    stage1: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """The degenerate (cell, policy) pairs, one row each with every reason found (columns DEGENERATE_COLUMNS).

    ``runs`` holds every evaluated language (a constant predictor and the baseline's English need them),
    ``chosen_runs`` the languages the report averages; own-data cells are not judged (they are left out anyway)."""
    judged = runs[~runs["own_data"]] if "own_data" in runs.columns else runs
    chosen = chosen_runs[~chosen_runs["own_data"]] if "own_data" in chosen_runs.columns else chosen_runs
    cells = _cell_frame(judged)
    reasons: dict[tuple, list[str]] = {}
    for found in (_constant_cells(judged), _chance_cells(chosen), _stage1_cells(cells, stage1 or {}),
                  _baseline_unlearned(judged)):
        for key, why in found.items():
            reasons.setdefault(key, []).append(why)
    rows = []
    for key, whys in sorted(reasons.items(), key=lambda kv: tuple(map(str, kv[0]))):
        cell = cells.loc[key] if key in cells.index else pd.Series(dtype=object)
        rows.append(dict(zip(DEGENERATE_KEYS, key), cell_id=cell.get("cell_id"), run_id=cell.get("run_id"),
                         baseline=key[4] == stats.BASELINE_KIND, reason=whys[0].split(":")[0],
                         detail="; ".join(whys)))
    return pd.DataFrame(rows, columns=DEGENERATE_COLUMNS)


def _drop_degenerate(gains: pd.DataFrame, degenerate: pd.DataFrame) -> pd.DataFrame:
    """Gains without the degenerate cells and without every gain over a degenerate baseline."""
    if degenerate.empty:
        return gains
    cells = degenerate.loc[~degenerate["baseline"], DEGENERATE_KEYS].assign(_drop=True)
    base_keys = ["base_model", "target", "policy", "seed"]
    bases = degenerate.loc[degenerate["baseline"], base_keys].drop_duplicates().assign(_drop_base=True)
    marked = gains.merge(cells, on=DEGENERATE_KEYS, how="left").merge(bases, on=base_keys, how="left")
    keep = ~(marked["_drop"].eq(True) | marked["_drop_base"].eq(True)).to_numpy()
    return gains.loc[keep]


# ---------------------------------------------------------------------------------------------------------------
# contrasts
# ---------------------------------------------------------------------------------------------------------------


def _split_keys(df: pd.DataFrame) -> list[str]:
    return ["base_model"] if df["base_model"].nunique() > 1 else []


def _tidy(table: pd.DataFrame, metrics: dict[str, str] | None = None) -> pd.DataFrame:
    table = table.rename(columns=_RENAME)
    if metrics is not None and "target" in table.columns:
        table.insert(list(table.columns).index(f"mean_{KIND_A}"), "metric", table["target"].map(metrics))
    return table


def _contrast(gains: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return stats.contrast_table(gains, by=by, kind_a=KIND_A, kind_b=KIND_B)


def _group_table(gains: pd.DataFrame, split: list[str]) -> pd.DataFrame:
    by_group = _contrast(gains, ["target_group", *split])
    targets = gains.groupby("target_group")["target"].agg(lambda s: ",".join(sorted(s.unique())))
    by_group.insert(1, "targets", by_group["target_group"].map(targets))
    if gains["target_group"].nunique() > 1:
        overall = _contrast(gains, split)
        overall.insert(0, "target_group", ALL_GROUPS)
        overall.insert(1, "targets", ",".join(sorted(gains["target"].unique())))
        by_group = pd.concat([by_group, overall[by_group.columns]], ignore_index=True)
    return _tidy(by_group)


def _family_keys(table: pd.DataFrame) -> list[str]:
    """One family of tests per policy (and base model): its targets' contrasts, the answer's claims."""
    return [k for k in ("base_model", "policy") if k in table.columns]


def _adjusted(by_target: pd.DataFrame, method: str) -> pd.DataFrame:
    """by_target with ``p_adjusted`` (after p_value) and ``family_size``: p-values adjusted within each family."""
    table = by_target.copy()
    adjusted = pd.Series(np.nan, index=table.index)
    size = pd.Series(0, index=table.index)
    keys = _family_keys(table)
    groups = [sub.index for _, sub in table.groupby(keys, sort=False)] if keys else [table.index]
    for index in groups:
        p = table.loc[index, "p_value"].to_numpy(dtype=float)
        adjusted.loc[index] = stats.adjust_pvalues(p, method=method)
        size.loc[index] = int(np.isfinite(p).sum())
    table.insert(list(table.columns).index("p_value") + 1, "p_adjusted", adjusted.to_numpy())
    table["family_size"] = size.to_numpy()
    return table


def _task_kinds(runs: pd.DataFrame) -> dict[str, str]:
    pairs = runs.loc[runs["kind"] != stats.BASELINE_KIND, ["intermediate", "kind"]].drop_duplicates()
    return dict(zip(pairs["intermediate"], pairs["kind"]))


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _languages_ordered(languages) -> list[str]:
    """English (the source language) first, then the others alphabetically."""
    return sorted(languages, key=lambda l: (l != SOURCE_LANGUAGE, l))


def _matrices(gains: pd.DataFrame, runs: pd.DataFrame, task_kinds: dict[str, str]):
    matrices, policies = {}, {}
    for target, sub in gains.groupby("target", sort=True):
        declared = runs.loc[runs["target"] == target, "declared_policy"] if "declared_policy" in runs else None
        policy = (declared.mode().iloc[0] if declared is not None and not declared.empty
                  else sub["policy"].mode().iloc[0])
        if policy not in set(sub["policy"]):
            policy = sub["policy"].mode().iloc[0]
        cells = sub[sub["policy"] == policy]
        # Mean over seeds (and base models): one number per language and task.
        matrix = cells.groupby(["language", "intermediate"])["gain"].mean().unstack("intermediate")
        columns = sorted(matrix.columns, key=lambda t: (_kind_rank(task_kinds.get(t, "")), t))
        matrices[target] = matrix.loc[_languages_ordered(matrix.index), columns]
        policies[target] = policy
    return matrices, policies


def _flagged(runs: pd.DataFrame, all_gains: pd.DataFrame) -> pd.DataFrame:
    columns = [*CELL_KEYS, "run_id", "n_languages", "mean_score", "mean_gain"]
    own = runs[runs["own_data"] & (runs["kind"] != stats.BASELINE_KIND)]
    if own.empty:
        return pd.DataFrame(columns=columns)
    cells = (own.groupby([*CELL_KEYS, "run_id"], sort=True)
             .agg(n_languages=("language", "nunique"), mean_score=("score", "mean")).reset_index())
    own_gains = all_gains[all_gains["own_data"]]
    if not own_gains.empty:
        gains = own_gains.groupby([*CELL_KEYS, "run_id"])["gain"].mean().rename("mean_gain").reset_index()
        cells = cells.merge(gains, on=[*CELL_KEYS, "run_id"], how="left")
    else:
        cells["mean_gain"] = math.nan
    return cells[columns]


# ---------------------------------------------------------------------------------------------------------------
# controls: format and training size beside each task's gain
# ---------------------------------------------------------------------------------------------------------------


def _task_names(runs: pd.DataFrame) -> dict[str, str]:
    """intermediate -> its task(s), comma-separated (a group lists its members)."""
    column = "intermediate_tasks" if "intermediate_tasks" in runs.columns else "intermediate"
    pairs = runs[["intermediate", column]].drop_duplicates("intermediate")
    return dict(zip(pairs["intermediate"], pairs[column]))


def _task_table(gains: pd.DataFrame, runs: pd.DataFrame, degenerate: pd.DataFrame, split: list[str]) -> pd.DataFrame:
    """One row per (target, intermediate task[, policy, base model]): kind, format, English training size, the mean
    gain (languages, then seeds averaged) and its seeds; degenerate seeds left out are counted beside it."""
    keys = ["target", *[k for k in ("policy",) if gains["policy"].nunique() > 1], *split]
    columns = [*keys[:1], "intermediate", "kind", *keys[1:]]
    columns = list(dict.fromkeys(columns))
    if gains.empty:
        return pd.DataFrame(columns=[*columns, *TASK_COLUMNS[3:]])
    per_seed = gains.groupby([*columns, "seed"], sort=True)["gain"].mean()
    table = per_seed.groupby(level=columns, sort=True).agg(mean_gain="mean", n_seeds="size").reset_index()
    names = _task_names(runs)
    table.insert(3, "format", table["intermediate"].map(lambda i: _task_format(names.get(i, i))))
    table.insert(4, "train_size", table["intermediate"].map(lambda i: _task_size(names.get(i, i))).astype("Int64"))
    if degenerate.empty:
        table["degenerate_seeds"] = 0
    else:
        counted = degenerate[~degenerate["baseline"]].groupby(
            [c for c in columns if c in degenerate.columns])["seed"].nunique().rename("degenerate_seeds")
        table = table.merge(counted.reset_index(), how="left", on=list(counted.index.names))
        table["degenerate_seeds"] = table["degenerate_seeds"].fillna(0).astype(int)
    table["_rank"] = table["kind"].map(_kind_rank)
    return table.sort_values([*keys, "_rank", "intermediate"], kind="stable").drop(columns="_rank").reset_index(drop=True)


def _confounding_notes(tasks: pd.DataFrame) -> list[str]:
    """When no format (or no training size range) is shared by the two kinds, their difference may be that one."""
    contrasted = tasks[tasks["kind"].isin([KIND_A, KIND_B])].drop_duplicates("intermediate")
    by_kind = {k: contrasted[contrasted["kind"] == k] for k in (KIND_A, KIND_B)}
    if any(sub.empty for sub in by_kind.values()):
        return []
    notes = []
    formats = {k: set(sub["format"]) - {"?"} for k, sub in by_kind.items()}
    if all(formats.values()) and not formats[KIND_A] & formats[KIND_B]:
        def listed(kind: str) -> str:
            sub = by_kind[kind]
            return "; ".join(f"{fmt}: {', '.join(sorted(sub.loc[sub['format'] == fmt, 'intermediate']))}"
                             for fmt in sorted(formats[kind]))
        notes.append(f"kind is confounded with format: {KIND_A} tasks are {' / '.join(sorted(formats[KIND_A]))} "
                     f"({listed(KIND_A)}), {KIND_B} tasks are {' / '.join(sorted(formats[KIND_B]))} "
                     f"({listed(KIND_B)}): no format has tasks of both kinds, so a {KIND_A} - {KIND_B} difference "
                     "may be a difference between formats")
    sizes = {k: sub["train_size"].dropna() for k, sub in by_kind.items()}
    if all(len(s) == len(by_kind[k]) for k, s in sizes.items()):
        a, b = sizes[KIND_A], sizes[KIND_B]
        if a.max() < b.min() or b.max() < a.min():
            small, large = (KIND_A, KIND_B) if a.max() < b.min() else (KIND_B, KIND_A)
            notes.append(f"kind is confounded with training size: every {small} task has fewer English training "
                         f"examples ({int(sizes[small].min())}-{int(sizes[small].max())}) than every {large} task "
                         f"({int(sizes[large].min())}-{int(sizes[large].max())})")
    return notes


# ---------------------------------------------------------------------------------------------------------------
# notes and the answer
# ---------------------------------------------------------------------------------------------------------------


def _method_label(method: str) -> str:
    return {"holm": "Holm", "bh": "BH"}.get(method, method)


def _search_notes(searches: list[str], present: list[str]) -> list[str]:
    if len(searches) > 1:
        return [f"{len(searches)} searches pooled: {', '.join(searches)} (cells grouped by cell id within them; "
                "searches with other settings have other cells)"]
    if searches and len(present) > 1:
        latest = " (the latest)" if searches[0] == present[-1] else ""
        return [f"read search {searches[0]}{latest} of the {len(present)} in this experiment "
                f"({', '.join(present)}); --search ID for another, --search all to pool them"]
    return []


def _degenerate_notes(degenerate: pd.DataFrame) -> list[str]:
    if degenerate.empty:
        return []
    reasons = degenerate["reason"].value_counts()
    notes = [f"{len(degenerate)} degenerate cell(s) left out of every contrast, summary and heatmap (degenerate.csv): "
             + ", ".join(f"{n} {why}" for why, n in reasons.items())]
    bases = degenerate[degenerate["baseline"]]
    for target, sub in bases.groupby("target", sort=True):
        seeds = ",".join(str(s) for s in sorted(set(sub["seed"])))
        notes.append(f"the 'none' baseline of {target} is degenerate (seed {seeds}): the gains over it are left out "
                     "and no direction is claimed for that target")
    return notes


def _notes(report_counts: dict[str, int], runs: pd.DataFrame, gains: pd.DataFrame, by_target: pd.DataFrame,
           unmatched: int, flagged: pd.DataFrame, context: dict[str, Any]) -> list[str]:
    notes = list(_search_notes(context["searches"], context["search_ids"]))
    if context.get("budget"):
        notes.append("a budgeted search (rounds, alpha spent over the looks): its valid answer is the sequential "
                     "decision of each target (the budget table); the 95% intervals and Holm p-values above treat its "
                     "seeds as a fixed design and ignore that targets were stopped after looking")
    if context["language_mode"] == ZERO_SHOT:
        notes.append(f"gains are over the zero-shot languages only: {SOURCE_LANGUAGE} is every target's training "
                     "language, so its results are not transfer (--languages all to include them)")
    empty = sorted(t for t, langs in context["languages"].items() if not langs)
    if empty:
        notes.append(f"target(s) {', '.join(empty)} have none of the chosen languages: left out")
    if report_counts.get("running"):
        notes.append(f"{report_counts['running']} run(s) still running and {report_counts.get('pending_cells', 0)} "
                     "cell(s) without a finished run: the search is not over, these results are partial")
    if report_counts.get("empty_cells"):
        notes.append(f"{report_counts['empty_cells']} cell(s) have no finished run with final metrics "
                     "(failed or stopped): they are missing from every table")
    if report_counts.get("policies_disagree"):
        notes.append(f"in {report_counts['policies_disagree']} cell(s) the selection policies pick different trials: "
                     "each policy's rows come from its own pick")
    if report_counts.get("unranked_policy_cells"):
        notes.append(f"{report_counts['unranked_policy_cells']} cell(s) log no best.<policy> for a policy they report: "
                     "its rows there come from the declared policy's pick")
    if unmatched:
        notes.append(f"{unmatched} result row(s) have no 'none' baseline with the same base model, target, policy "
                     "and seed: left out")
    without_base = sorted(set(runs["target"]) - set(runs.loc[runs["kind"] == stats.BASELINE_KIND, "target"]))
    if without_base:
        notes.append(f"no baseline ('none') cells for target(s) {', '.join(without_base)}: no gains there")
    if not flagged.empty:
        pairs = sorted({f"{i} -> {t}" for i, t in zip(flagged["intermediate"], flagged["target"])})
        notes.append("left out of every contrast (the intermediate task is the target's own English training data, "
                     f"not transfer): {', '.join(pairs)}")
    notes += _degenerate_notes(context["degenerate"])
    notes += _confounding_notes(context["tasks"])
    policies = sorted(runs["policy"].unique())
    if len(policies) == 1:
        notes.append(f"only the {policies[0]} selection policy was logged; English-dev and target-dev selection can "
                     "disagree (RESEARCH pitfall 1)")
    seeds = runs.groupby(["target", "intermediate"])["seed"].nunique()
    if not seeds.empty and seeds.min() < 3:
        notes.append(f"some task has only {int(seeds.min())} seed(s) with a result: zero-shot scores swing between "
                     "seeds, 3 or more are advised (RESEARCH pitfall 2)")
    other = sorted(set(gains["kind"]) - {KIND_A, KIND_B})
    if other:
        notes.append(f"kind(s) {', '.join(other)} are not part of the {KIND_A}/{KIND_B} contrast; their gains are in "
                     "gain_by_target.png and the heatmaps")
    done = by_target.dropna(subset=["diff"])
    if not done.empty:
        n_a, n_b = int(done[f"n_{KIND_A}"].min()), int(done[f"n_{KIND_B}"].min())
        notes.append(f"the unit of analysis is the intermediate task (as few as {n_a} {KIND_A} and {n_b} {KIND_B} "
                     "in a contrast): with so few tasks the intervals are wide")
    notes.append(f"method: {stats.METHOD_NOTE}")
    method = _method_label(context["adjust"])
    notes.append(f"the answer's family of tests: the by-target contrasts of each policy (and base model), "
                 f"{method}-adjusted (p_adjusted); a direction is claimed only where the adjusted p < {ALPHA:g} and "
                 "the 95% interval (not adjusted) excludes 0. Group and per-language rows are descriptive: their "
                 "p-values are not adjusted for multiple comparisons")
    return notes


def _fmt_target(row: dict[str, Any], method: str) -> str:
    return (f"{row['target']} {row['diff']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], "
            f"p_{method}={row['p_adjusted']:.3g}")


def _cells_listed(cells: pd.DataFrame, limit: int = 4) -> str:
    items = [f"{r['intermediate']} seed {r['seed']} ({r['reason']})" for r in cells.to_dict("records")]
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _refusal(row: dict[str, Any] | None, degenerate: pd.DataFrame) -> str | None:
    """Why no direction may be claimed for a target (its degenerate cells of the family given), or None."""
    bases = degenerate[degenerate["baseline"]]
    if not bases.empty:
        seeds = ",".join(str(s) for s in sorted(set(bases["seed"])))
        return f"the 'none' baseline is degenerate (seed {seeds})"
    if row is None:
        return "no gains left"
    n_a, n_b = int(row[f"n_{KIND_A}"]), int(row[f"n_{KIND_B}"])
    if min(n_a, n_b) < MIN_TASKS:
        left = " left after degenerate cells" if not degenerate.empty else ""
        return f"{n_a} {KIND_A} and {n_b} {KIND_B} task(s){left}, a kind needs {MIN_TASKS}"
    return None


def _subset(table: pd.DataFrame, values: dict[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for key, value in values.items():
        if key in table.columns:
            mask &= table[key] == value
    return table[mask]


def _headline(by_target: pd.DataFrame, runs: pd.DataFrame, degenerate: pd.DataFrame, family_keys: list[str],
              method: str) -> list[str]:
    """Per policy (and base model): which targets show a direction after adjustment, which none, and why not."""
    if by_target.dropna(subset=["diff"]).empty and degenerate.empty:
        return [f"no target has both {KIND_A} and {KIND_B} tasks with results: no contrast"]
    label = _method_label(method)
    families = runs.groupby(family_keys, sort=True) if family_keys else [((), runs)]
    lines = []
    for key, fam_runs in families:
        key = key if isinstance(key, tuple) else (key,)
        values = dict(zip(family_keys, key))
        fam_table, fam_degenerate = _subset(by_target, values), _subset(degenerate, values)
        higher = {KIND_A: [], KIND_B: []}
        unclear, refused, left_out = [], [], []
        for target in sorted(set(fam_runs["target"])):
            rows = fam_table[fam_table["target"] == target].to_dict("records")
            row = rows[0] if rows else None
            cells = fam_degenerate[fam_degenerate["target"] == target]
            if not cells.empty:
                left_out.append(f"{target}: {len(cells)} degenerate cell(s) left out: {_cells_listed(cells)}")
            why = _refusal(row, cells)
            if why is not None:
                refused.append(f"{target} ({why})")
            elif row["p_adjusted"] < ALPHA and row["low"] > 0:
                higher[KIND_A].append(_fmt_target(row, method))
            elif row["p_adjusted"] < ALPHA and row["high"] < 0:
                higher[KIND_B].append(_fmt_target(row, method))
            else:
                unclear.append(_fmt_target(row, method) if not math.isnan(row["p_adjusted"]) else
                               f"{target} {row['diff']:+.2f} (no interval)")
        parts = [f"{kind} higher: {', '.join(items)}" for kind, items in higher.items() if items]
        if unclear:
            parts.append(f"no clear difference: {', '.join(unclear)}")
        if refused:
            parts.append(f"no direction: {', '.join(refused)}")
        prefix = ", ".join(f"{k}={v}" for k, v in values.items())
        line = (f"{prefix}: " if prefix else "") + "; ".join(parts)
        if higher[KIND_A] and higher[KIND_B]:
            line += ". The kinds diverge in opposite directions depending on the target"
        n = int(fam_table["p_adjusted"].notna().sum())
        line += (f". {label}-adjusted over {n} target{'s' if n != 1 else ''}: a direction only where the adjusted p < {ALPHA:g} and the "
                 "95% interval excludes 0")
        if left_out:
            line += ". " + "; ".join(left_out)
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------------


def _prepared(runs_df: pd.DataFrame) -> pd.DataFrame:
    if runs_df.empty:
        raise CompareError("no results to compare")
    runs = runs_df.copy()
    # What load_runs says of the search (attrs) is read from runs_df, once: pandas deep-copies a frame's attrs into
    # every frame derived from it, which at 10,000 runs (the stage-1 records) cost seconds.
    runs.attrs = {}
    runs["own_data"] = runs["own_data"].astype(bool) if "own_data" in runs else False
    if not (runs["kind"] == stats.BASELINE_KIND).any():
        raise CompareError("no baseline cells (intermediate 'none'): gains need a run without intermediate "
                           "training; add 'none' to the space's intermediates")
    return runs


def _target_metrics(runs_df: pd.DataFrame, runs: pd.DataFrame) -> dict[str, str]:
    metrics = dict(runs_df.attrs.get("metrics") or {})
    if "metric" in runs.columns:
        for target, metric in runs.groupby("target")["metric"].first().items():
            metrics.setdefault(target, metric)
    return metrics


def _tables(gains: pd.DataFrame, split: list[str], metrics: dict[str, str], adjust: str):
    """The contrasts by target (adjusted), by group and by language, and the kinds' summaries."""
    try:
        by_target = _adjusted(_tidy(_contrast(gains, ["target", *split]), metrics), adjust)
        by_group = _group_table(gains, split)
        by_language = _tidy(_contrast(gains, ["target", "language", *split]), metrics)
        kinds = stats.kind_summary(gains, by=["target", *split])
    except ValueError as err:  # the runs contradict themselves: a task tagged with two kinds
        raise CompareError(str(err)) from None
    return by_target, by_group, by_language, kinds


def build_report(runs_df: pd.DataFrame, languages: str = ZERO_SHOT, adjust: str = "holm") -> Report:
    """Gains, contrasts and summaries of one experiment's rows (see the module docstring).

    ``languages``: ``zero-shot`` (default), ``all`` or a comma list; ``adjust``: ``holm`` or ``bh``. Raises
    CompareError for bad input: no baseline (``none``) cell, no gain to compute, an unknown language or method."""
    if adjust not in ADJUST_METHODS:
        raise CompareError(f"--adjust {adjust!r}: use one of {', '.join(ADJUST_METHODS)}")
    every = _prepared(runs_df)
    chosen_languages = select_languages(every, languages)
    runs = _at_languages(every, chosen_languages)
    degenerate = find_degenerate(every, runs, runs_df.attrs.get("stage1"))
    try:
        all_gains = stats.compute_gains(runs)
    except ValueError as err:  # two results for one task, seed and language: a table not read by load_runs
        raise CompareError(str(err)) from None
    unmatched = all_gains.attrs.get("unmatched", 0)
    transfer = all_gains[~all_gains["own_data"]]
    if transfer.empty:
        raise CompareError("no gains to compare: no intermediate-task result shares a base model, target, policy "
                           "and seed with a finished 'none' baseline at the chosen languages")
    gains = _drop_degenerate(transfer, degenerate).copy()
    metrics = _target_metrics(runs_df, runs)
    split = _split_keys(every[every["kind"] != stats.BASELINE_KIND])
    by_target, by_group, by_language, kinds = _tables(gains, split, metrics, adjust)
    task_kinds = _task_kinds(runs)
    matrices, matrix_policy = _matrices(gains, runs, task_kinds)
    flagged = _flagged(runs, all_gains)
    tasks = _task_table(gains, runs, degenerate, split)
    counts = dict(runs_df.attrs.get("counts") or {})
    counts.update(result_rows=len(runs), gain_rows=len(gains), flagged_cells=int(flagged["run_id"].nunique())
                  if not flagged.empty else 0, degenerate_cells=len(degenerate))
    counts.setdefault("selected", int(runs["run_id"].nunique()) if "run_id" in runs else 0)
    parents = runs_df.attrs.get("parent_run_ids") or []
    context = {"searches": list(runs_df.attrs.get("searches") or []),
               "search_ids": list(runs_df.attrs.get("search_ids") or []), "language_mode": _language_mode(languages),
               "languages": chosen_languages, "degenerate": degenerate, "tasks": tasks, "adjust": adjust,
               "budget": runs_df.attrs.get("budget")}
    family_keys = [*split, *(["policy"] if runs["policy"].nunique() > 1 else [])]
    transfer_runs = runs[~runs["own_data"]]
    return Report(experiment=runs_df.attrs.get("experiment", ""), runs=runs, gains=gains, flagged=flagged,
                  contrast_by_target=by_target, contrast_by_group=by_group, contrast_by_language=by_language,
                  kinds=kinds, matrices=matrices, matrix_policy=matrix_policy, task_kinds=task_kinds,
                  metrics=metrics, counts=counts,
                  notes=_notes(counts, runs, gains, by_target, unmatched, flagged, context),
                  headline=_headline(by_target, transfer_runs, degenerate, family_keys, adjust),
                  parent_run_id=parents[0] if parents else None, languages=chosen_languages,
                  language_mode=context["language_mode"], adjust=adjust, degenerate=degenerate, tasks=tasks,
                  searches=context["searches"], search_ids=context["search_ids"],
                  budget=dict(runs_df.attrs.get("budget") or {}))


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------


def safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "target"


def _unknown_sizes_marked(tasks: pd.DataFrame) -> pd.DataFrame:
    """A training size nobody knows reads "?" in tasks.csv, as in the printed table (not a blank, not 0)."""
    sizes = tasks["train_size"].astype(object)
    return tasks.assign(train_size=sizes.where(sizes.notna(), "?"))


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """CSVs, PNGs and summary.json under out_dir; returns the paths written."""
    from xgrid.compare import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tables = {"gains.csv": report.gains, "contrast_by_target.csv": report.contrast_by_target,
              "contrast_by_group.csv": report.contrast_by_group,
              "contrast_by_language.csv": report.contrast_by_language, "flagged_cells.csv": report.flagged,
              "kind_summary.csv": report.kinds, "degenerate.csv": report.degenerate,
              "tasks.csv": _unknown_sizes_marked(report.tasks)}
    for name, table in tables.items():
        path = out / name
        table.to_csv(path, index=False)
        written.append(path)
    summary = {"experiment": report.experiment, "contrast": f"{KIND_A} - {KIND_B}", "metrics": report.metrics,
               "heatmap_policy": report.matrix_policy, "counts": report.counts, "headline": report.headline,
               "notes": report.notes, "method": stats.METHOD_NOTE, "adjust": report.adjust,
               "languages": {"mode": report.language_mode, "label": report.languages_label,
                             "by_target": report.languages},
               "searches": report.searches, "search_ids": report.search_ids,
               "parent_run_id": report.parent_run_id, "budget": report.budget}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1, default=_json_default))
    written.append(path)
    if not report.kinds.empty:
        written.append(plots.gain_by_target(report.kinds, out / "gain_by_target.png", report.metrics,
                                            languages=report.language_mode))
    for target, matrix in report.matrices.items():
        title = (f"{target}: gain over 'none'\n({report.metrics.get(target, 'score')}, "
                 f"{report.matrix_policy[target]} selection, mean over seeds; {report.language_mode} languages)")
        written.append(plots.heatmap(matrix, out / f"heatmap_{safe_name(target)}.png", report.task_kinds, title))
    return written


def _json_default(value: Any):
    try:
        return value.item()  # numpy scalars
    except AttributeError:
        return str(value)


def log_report(report_files: list[Path], experiment: str, tracking_uri: str | None,
               parent_run_id: str | None = None) -> str:
    """Log the files as artifacts under ``compare/`` of the search's parent run; returns that run's id.

    Without ``parent_run_id`` the experiment's most recent search run is used."""
    reader, exp = open_experiment(experiment, tracking_uri)
    run_id = parent_run_id or reader.find_parent_run(exp.experiment_id)
    if run_id is None:
        raise CompareError(f"experiment {exp.name!r} has no search run (tag {schema.STAGE}={schema.SEARCH_STAGE}) "
                           "to log the comparison to; use --no-log")
    writer = open_writer(tracking_uri, exp.name)  # the experiment exists: found above, by name or id
    for path in report_files:
        writer.log_artifact(run_id, path, ARTIFACT_DIR)
    # The writer queues (xgrid.tracking.queued): the report is logged once close() has drained it.
    if getattr(writer, "close", lambda: 0)():
        raise CompareError(f"the report could not be logged at {tracking_uri}: the store does not answer")
    return run_id
