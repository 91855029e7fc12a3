"""The comparison behind `xgrid compare`: do syntactic and semantic intermediate tasks diverge?

`build_report` turns the rows of `xgrid.compare.runs.load_runs` into gains over the ``none`` baseline and the
contrast syntactic - semantic, by target, by target group and by (target, language), under every selection
policy present (RESEARCH pitfall 1: English dev is zero-shot, target dev an oracle; both are reported). All the
statistics come from `xgrid.compare.stats` (task-level two-level bootstrap, permutation test over tasks).

Cells whose intermediate task is the target's own English training data (tag ``own_data``) are not transfer:
they are left out of every contrast, summary and heatmap and listed in ``flagged``. When the experiment holds
several base models, every table is split by base model (pooling encoders of different sizes would answer a
different question).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xgrid.compare import stats
from xgrid.compare.plots import KIND_ORDER
from xgrid.compare.runs import CompareError, open_experiment
from xgrid import tracking_schema as schema
from xgrid.tracking import open_writer

__all__ = ["Report", "build_report", "write_report", "log_report", "KIND_A", "KIND_B", "KIND_ORDER", "ALL_GROUPS"]

KIND_A, KIND_B = "syntactic", "semantic"
ALL_GROUPS = "(all)"
ARTIFACT_DIR = "compare"
CELL_KEYS = ["base_model", "target", "target_group", "policy", "intermediate", "kind", "seed"]

_RENAME = {"mean_a": f"mean_{KIND_A}", "mean_b": f"mean_{KIND_B}", "n_tasks_a": f"n_{KIND_A}",
           "n_tasks_b": f"n_{KIND_B}"}


@dataclass
class Report:
    experiment: str
    runs: pd.DataFrame  # load_runs rows (all cells, flagged ones included)
    gains: pd.DataFrame  # compute_gains rows used by the contrasts (own-data cells left out)
    flagged: pd.DataFrame  # own-data cells: one row per cell and policy, mean gain over languages
    contrast_by_target: pd.DataFrame
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
    n_boot: int = 2000
    seed: int = 0


# ---------------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------------


def _split_keys(df: pd.DataFrame) -> list[str]:
    return ["base_model"] if df["base_model"].nunique() > 1 else []


def _tidy(table: pd.DataFrame, metrics: dict[str, str] | None = None) -> pd.DataFrame:
    table = table.rename(columns=_RENAME)
    if metrics is not None and "target" in table.columns:
        table.insert(list(table.columns).index(f"mean_{KIND_A}"), "metric", table["target"].map(metrics))
    return table


def _contrast(gains: pd.DataFrame, by: list[str], n_boot: int, seed: int) -> pd.DataFrame:
    return stats.contrast_table(gains, by=by, kind_a=KIND_A, kind_b=KIND_B, n_boot=n_boot, seed=seed)


def _group_table(gains: pd.DataFrame, split: list[str], n_boot: int, seed: int) -> pd.DataFrame:
    by_group = _contrast(gains, ["target_group", *split], n_boot, seed)
    targets = gains.groupby("target_group")["target"].agg(lambda s: ",".join(sorted(s.unique())))
    by_group.insert(1, "targets", by_group["target_group"].map(targets))
    if gains["target_group"].nunique() > 1:
        overall = _contrast(gains, split, n_boot, seed)
        overall.insert(0, "target_group", ALL_GROUPS)
        overall.insert(1, "targets", ",".join(sorted(gains["target"].unique())))
        by_group = pd.concat([by_group, overall[by_group.columns]], ignore_index=True)
    return _tidy(by_group)


def _task_kinds(runs: pd.DataFrame) -> dict[str, str]:
    pairs = runs.loc[runs["kind"] != stats.BASELINE_KIND, ["intermediate", "kind"]].drop_duplicates()
    return dict(zip(pairs["intermediate"], pairs["kind"]))


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def _languages_ordered(languages) -> list[str]:
    return sorted(languages, key=lambda l: (l != "en", l))


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


def _p_floor(n_a: int, n_b: int) -> float:
    return 2.0 / math.comb(n_a + n_b, n_a) if n_a >= 2 and n_b >= 2 else math.nan


def _notes(report_counts: dict[str, int], runs: pd.DataFrame, gains: pd.DataFrame, by_target: pd.DataFrame,
           unmatched: int, flagged: pd.DataFrame) -> list[str]:
    notes = []
    if report_counts.get("running"):
        notes.append(f"{report_counts['running']} run(s) still running and {report_counts.get('pending_cells', 0)} "
                     "cell(s) without a finished run: the search is not over, these results are partial")
    if report_counts.get("empty_cells"):
        notes.append(f"{report_counts['empty_cells']} cell(s) have no finished run with final metrics "
                     "(failed or stopped): they are missing from every table")
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
        floor = _p_floor(n_a, n_b)
        text = f"the unit of analysis is the intermediate task (as few as {n_a} {KIND_A} and {n_b} {KIND_B}): "
        text += ("percentile intervals are too narrow with so few tasks (about 0.90 coverage with 3 + 3)"
                 if min(n_a, n_b) < 10 else "intervals resample tasks, then seeds")
        if not math.isnan(floor):
            text += f"; the permutation test cannot go below p = {floor:.3g} with {n_a} + {n_b} tasks"
        notes.append(text)
    notes.append("per-language rows are descriptive: their p-values are not corrected for multiple comparisons")
    return notes


def _fmt_targets(rows: pd.DataFrame) -> str:
    return ", ".join(f"{r['target']} {r['diff']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"
                     for r in rows.to_dict("records"))


def _headline(by_target: pd.DataFrame) -> list[str]:
    """Per policy (and base model): where the syntactic - semantic interval lies above, below or around 0."""
    done = by_target.dropna(subset=["diff"])
    if done.empty:
        return [f"no target has both {KIND_A} and {KIND_B} tasks with results: no contrast"]
    keys = [k for k in ("base_model", "policy") if k in done.columns]
    groups = done.groupby(keys, sort=False) if keys else [((), done)]
    lines = []
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        above, below = sub[sub["low"] > 0], sub[sub["high"] < 0]
        around = sub[(sub["low"] <= 0) & (sub["high"] >= 0)]
        parts = []
        if not above.empty:
            parts.append(f"{KIND_A} higher (interval above 0): {_fmt_targets(above)}")
        if not below.empty:
            parts.append(f"{KIND_B} higher (interval below 0): {_fmt_targets(below)}")
        if not around.empty:
            parts.append(f"no clear difference (interval covers 0): {_fmt_targets(around)}")
        prefix = ", ".join(f"{k}={v}" for k, v in zip(keys, key))
        line = (f"{prefix}: " if prefix else "") + "; ".join(parts)
        if not above.empty and not below.empty:
            line += ". The kinds diverge in opposite directions depending on the target"
        p = sub["p_value"].min()
        line += (f". Smallest permutation p = {p:.3g}" if not math.isnan(p) else ". No permutation p (a kind has "
                 "fewer than 2 tasks)")
        lines.append(line)
    return lines


def build_report(runs_df: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> Report:
    """Gains, contrasts and summaries of one experiment's rows (see the module docstring).

    Raises CompareError when there is no baseline (``none``) cell or no gain can be computed."""
    if runs_df.empty:
        raise CompareError("no results to compare")
    runs = runs_df.copy()
    runs["own_data"] = runs["own_data"].astype(bool) if "own_data" in runs else False
    if not (runs["kind"] == stats.BASELINE_KIND).any():
        raise CompareError("no baseline cells (intermediate 'none'): gains need a run without intermediate "
                           "training; add 'none' to the space's intermediates")
    all_gains = stats.compute_gains(runs)
    unmatched = all_gains.attrs.get("unmatched", 0)
    gains = all_gains[~all_gains["own_data"]].copy()
    if gains.empty:
        raise CompareError("no gains to compare: no intermediate-task result shares a base model, target, policy "
                           "and seed with a finished 'none' baseline")
    metrics = dict(runs_df.attrs.get("metrics") or {})
    if "metric" in runs.columns:
        for target, metric in runs.groupby("target")["metric"].first().items():
            metrics.setdefault(target, metric)
    split = _split_keys(gains)
    by_target = _tidy(_contrast(gains, ["target", *split], n_boot, seed), metrics)
    by_group = _group_table(gains, split, n_boot, seed)
    by_language = _tidy(_contrast(gains, ["target", "language", *split], n_boot, seed), metrics)
    kinds = stats.kind_summary(gains, by=["target", *split], n_boot=n_boot, seed=seed)
    task_kinds = _task_kinds(runs)
    matrices, matrix_policy = _matrices(gains, runs, task_kinds)
    flagged = _flagged(runs, all_gains)
    counts = dict(runs_df.attrs.get("counts") or {})
    counts.update(result_rows=len(runs), gain_rows=len(gains), flagged_cells=int(flagged["run_id"].nunique())
                  if not flagged.empty else 0)
    counts.setdefault("selected", int(runs["run_id"].nunique()) if "run_id" in runs else 0)
    parents = runs_df.attrs.get("parent_run_ids") or []
    return Report(experiment=runs_df.attrs.get("experiment", ""), runs=runs, gains=gains, flagged=flagged,
                  contrast_by_target=by_target, contrast_by_group=by_group, contrast_by_language=by_language,
                  kinds=kinds, matrices=matrices, matrix_policy=matrix_policy, task_kinds=task_kinds,
                  metrics=metrics, counts=counts,
                  notes=_notes(counts, runs, gains, by_target, unmatched, flagged), headline=_headline(by_target),
                  parent_run_id=parents[0] if parents else None, n_boot=n_boot, seed=seed)


# ---------------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------------


def safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "target"


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """CSVs, PNGs and summary.json under out_dir; returns the paths written."""
    from xgrid.compare import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tables = {"gains.csv": report.gains, "contrast_by_target.csv": report.contrast_by_target,
              "contrast_by_group.csv": report.contrast_by_group,
              "contrast_by_language.csv": report.contrast_by_language, "flagged_cells.csv": report.flagged,
              "kind_summary.csv": report.kinds}
    for name, table in tables.items():
        path = out / name
        table.to_csv(path, index=False)
        written.append(path)
    summary = {"experiment": report.experiment, "contrast": f"{KIND_A} - {KIND_B}", "metrics": report.metrics,
               "heatmap_policy": report.matrix_policy, "counts": report.counts, "headline": report.headline,
               "notes": report.notes, "n_boot": report.n_boot, "seed": report.seed, "parent_run_id": report.parent_run_id}
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1, default=_json_default))
    written.append(path)
    if not report.kinds.empty:
        written.append(plots.gain_by_target(report.kinds, out / "gain_by_target.png", report.metrics))
    for target, matrix in report.matrices.items():
        title = (f"{target}: gain over 'none'\n({report.metrics.get(target, 'score')}, "
                 f"{report.matrix_policy[target]} selection, mean over seeds)")
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
