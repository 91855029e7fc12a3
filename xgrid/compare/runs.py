"""Read a search back from its tracking store: one result row per (cell, selection policy, language).

Runs come through `xgrid.tracking.open_reader` as plain `RunRecord`s, so any backend with a reader will do; names
follow `xgrid.tracking_schema` exactly. A cell (tag ``cell_id``) usually has several stage-2 trials (the
learning rate is searched inside the cell). Every selection policy P picks its own trial: among the FINISHED runs
that carry P's final metric (``<metric>.avg``, or ``target_dev.<metric>.avg`` for the policy the search did not
declare), the one with the highest ``best.P`` (ties: lowest learning rate, then run id), and the rows of P come
from that run. Under the declared policy that is the rule `xgrid.search.results.best_per_cell` applies to
``results.csv``, so both agree; taking the other policy's scores from the declared policy's pick would mix two
selections. Retrieval cells have a single run and no learning rate. RUNNING runs (a search still in progress)
never take part in the selection; they are counted, and so are the runs left out for any other reason
(``DataFrame.attrs``).

One search at a time: an experiment may hold several searches (tag ``search_id``; their parent runs have stage
``search``), with other settings and so other cells. `load_runs` reads the latest by default, one or several
named ones, or all of them pooled; cells are grouped by ``cell_id`` within the chosen searches.

The primary metric of a target is the run's ``target_metric`` tag when present; otherwise the task registry's
metric for the target when the run logged it; otherwise the only ``<metric>.avg`` the run logged. A run logs
every metric its format computes (tagging: f1, precision, recall, accuracy), so without a tag or a registry entry
the choice can be ambiguous: that is an error naming the candidates, never a guess.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Any, Iterable

import pandas as pd

from xgrid import tracking_schema as schema
from xgrid.tracking import (ACTIVE_STATUSES, FAILED, FINISHED, KILLED, Experiment, NotFoundError, RunReader,
                            RunRecord, open_reader)

__all__ = ["ALL_SEARCHES", "CompareError", "COLUMNS", "choose_searches", "load_runs", "open_experiment", "primary_metric", "task_spec"]

COLUMNS = ["base_model", "target", "target_group", "target_format", "policy", "intermediate", "kind", "seed",
           "language", "score", "own_data", "run_id", "learning_rate",
           # extras: where the row comes from
           "cell_id", "metric", "declared_policy", "stage", "intermediate_tasks", "stage1_key", "search_id"]
ALL_SEARCHES = "all"


class CompareError(ValueError):
    """Bad input for `xgrid compare` (unknown experiment, nothing to compare): one clear line for the user."""


def open_experiment(experiment: str, tracking_uri: str | None) -> tuple[RunReader, Experiment]:
    """A reader of the store and the experiment in it (name or numeric id); CompareError when either is missing."""
    try:
        reader = open_reader(tracking_uri)
        return reader, reader.find_experiment(experiment)
    except NotFoundError as err:
        raise CompareError(str(err)) from None


# ---------------------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _registry():
    try:
        from xgrid.tasks import default_registry

        return default_registry()
    except Exception:  # a registry that cannot load must not stop a read-back: what it feeds is skipped
        return None


def task_spec(name: str):
    """The registry's entry for a task a run names, or None (an unknown task, or no registry here)."""
    registry = _registry()
    return registry.get(name) if registry is not None and name in registry else None


def _registry_metric(target: str) -> str | None:
    spec = task_spec(target)
    return spec.metric if spec is not None else None


def _metric_candidates(metrics: dict[str, float]) -> list[str]:
    out = set()
    for name in metrics:
        head, sep, tail = name.rpartition(".")
        if sep and tail == schema.AVG and "." not in head and head not in schema.NOT_PRIMARY:
            out.add(head)
    return sorted(out)


def primary_metric(tags: dict[str, str], metrics: dict[str, float]) -> str | None:
    """The target's primary metric for one run (see the module docstring); None when the run has no final metric.

    Raises CompareError when several `<metric>.avg` are logged and neither a tag nor the registry decides."""
    if tags.get(schema.METRIC_TAG):
        return tags[schema.METRIC_TAG]
    candidates = _metric_candidates(metrics)
    if not candidates:
        return None
    known = _registry_metric(tags.get(schema.TARGET_TAG, ""))
    if known in candidates:
        return known
    if len(candidates) == 1:
        return candidates[0]
    raise CompareError(f"cannot tell the primary metric of target {tags.get(schema.TARGET_TAG)!r}: the runs log "
                       f"{', '.join(_avg(c) for c in candidates)}; tag the runs with {schema.METRIC_TAG!r} or "
                       "register the target in the task registry")


def _avg(metric: str) -> str:
    """`f1.avg`: the final metric over every language, present on every run with results."""
    return f"{metric}.{schema.AVG}"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _declared(tags: dict[str, str]) -> str:
    return tags.get(schema.POLICY_TAG) or schema.DEFAULT_POLICY


def _usable(run: RunRecord, metric: str | None) -> bool:
    return (run.status == FINISHED and metric is not None and _avg(metric) in run.metrics
            and run.tags.get(schema.STATUS_TAG, "completed") == "completed")


def _best(run: RunRecord, policy: str) -> float | None:
    """The run's `best.<policy>`, None when it logged none (or NaN)."""
    best = run.metrics.get(schema.best_metric(policy))
    return None if best is None or math.isnan(best) else best


def _rank_key(run: RunRecord, policy: str):
    """Best first under one policy: the highest `best.<policy>`, then the lowest learning rate, then the run id."""
    best = _best(run, policy)
    lr = _float(run.params.get(schema.LEARNING_RATE))
    return (-best if best is not None else math.inf, lr if not math.isnan(lr) else math.inf, run.run_id)


def _languages(metrics: dict[str, float], prefix: str) -> list[str]:
    langs = []
    for name in metrics:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest and "." not in rest and rest not in schema.AGGREGATES:
                langs.append(rest)
    return sorted(langs)


def _common(run: RunRecord, metric: str) -> dict[str, Any]:
    tags = run.tags
    try:
        seed = int(tags.get(schema.SEED_TAG, ""))
    except ValueError:
        raise CompareError(f"run {run.run_id}: tag seed={tags.get(schema.SEED_TAG)!r} is not an integer") from None
    return {"base_model": tags.get(schema.BASE_MODEL_TAG, ""), "target": tags.get(schema.TARGET_TAG, ""),
            "target_group": tags.get(schema.TARGET_GROUP_TAG, ""),
            "target_format": tags.get(schema.TARGET_FORMAT_TAG, ""),
            "intermediate": tags.get(schema.INTERMEDIATE_TAG, ""), "kind": tags.get(schema.KIND_TAG, ""),
            "seed": seed, "own_data": tags.get(schema.OWN_DATA_TAG, "false").lower() == "true",
            "run_id": run.run_id, "learning_rate": _float(run.params.get(schema.LEARNING_RATE)),
            "cell_id": tags.get(schema.CELL_TAG), "metric": metric, "declared_policy": _declared(tags),
            "stage": tags.get(schema.STAGE),
            "intermediate_tasks": tags.get(schema.INTERMEDIATE_TASKS_TAG, tags.get(schema.INTERMEDIATE_TAG, "")),
            "stage1_key": tags.get(schema.STAGE1_KEY_TAG, ""), "search_id": tags.get(schema.SEARCH_ID_TAG, "")}


def _has_policy(run: RunRecord, metric: str, policy: str) -> bool:
    return schema.final_metric_name(metric, schema.AVG, policy, _declared(run.tags)) in run.metrics


def _policy_rows(run: RunRecord, metric: str, policy: str) -> list[dict[str, Any]]:
    """The rows of one policy, from the run that policy selected."""
    declared = _declared(run.tags)
    prefix = schema.final_metric_name(metric, "", policy, declared)
    common = _common(run, metric)
    return [common | {"policy": policy, "language": language,
                      "score": float(run.metrics[schema.final_metric_name(metric, language, policy, declared)])}
            for language in _languages(run.metrics, prefix)]


def _select_per_policy(usable: list[tuple[RunRecord, str]]) -> tuple[dict[str, tuple[RunRecord, str]], int]:
    """policy -> (run, metric) each policy selects among the cell's usable runs (those with its finals), and how
    many policies had no `best.<policy>` on any of several runs: those keep the declared policy's pick, the only
    selection the runs can support (ranking by learning rate alone would pick a trial at random)."""
    declared = _declared(usable[0][0].tags)
    chosen: dict[str, tuple[RunRecord, str]] = {}
    unranked = 0
    for policy in [declared, *(p for p in schema.POLICIES if p != declared)]:
        candidates = [pair for pair in usable if _has_policy(pair[0], pair[1], policy)]
        ranked = [pair for pair in candidates if _best(pair[0], policy) is not None]
        if ranked:
            chosen[policy] = min(ranked, key=lambda pair: _rank_key(pair[0], policy))
        elif policy == declared:
            chosen[policy] = min(candidates, key=lambda pair: _rank_key(pair[0], policy))
        elif candidates and _has_policy(*chosen[declared], policy):
            chosen[policy] = chosen[declared]
            unranked += len(candidates) > 1  # a cell of one run (a retrieval evaluation) has nothing to choose
    return chosen, unranked


# ---------------------------------------------------------------------------------------------------------------
# searches
# ---------------------------------------------------------------------------------------------------------------


def _search_order(parents: list[RunRecord], children: list[RunRecord]) -> list[str]:
    """The search ids of the experiment, oldest first: by their parent run's start, else by their first run's."""
    def start(run: RunRecord, position: int) -> tuple[float, int]:
        # A reader that knows no start times keeps the store's order: the position breaks the tie.
        return (run.start_time if run.start_time is not None else -math.inf, position)

    began: dict[str, tuple[float, int]] = {}
    for position, run in enumerate(parents):
        sid = run.tags.get(schema.SEARCH_ID_TAG)
        if sid:
            began[sid] = max(began.get(sid, start(run, position)), start(run, position))
    orphans: dict[str, tuple[float, int]] = {}
    for position, run in enumerate(children, start=len(parents)):
        sid = run.tags.get(schema.SEARCH_ID_TAG)
        if sid and sid not in began:
            orphans[sid] = min(orphans.get(sid, start(run, position)), start(run, position))
    began |= orphans
    return sorted(began, key=lambda sid: began[sid])


def choose_searches(search: str | None, present: list[str], experiment: str) -> list[str]:
    """The search ids `--search` names: None (the latest), ``all``, or a comma list of ids present.

    CompareError naming the ids present when one is unknown. An experiment whose runs carry no search id at all
    (written before the tag existed) is one search: []."""
    asked = (search or "").strip()
    if not present:
        if asked in ("", "latest", ALL_SEARCHES):
            return []
        raise CompareError(f"no search {asked!r} in experiment {experiment!r}: its runs carry no {schema.SEARCH_ID_TAG} "
                           "tag (written before it existed), so they are all one search; leave --search out")
    if asked in ("", "latest"):
        return [present[-1]]
    if asked == ALL_SEARCHES:
        return list(present)
    wanted = [s.strip() for s in asked.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in present]
    if unknown:
        raise CompareError(f"no search {', '.join(map(repr, unknown))} in experiment {experiment!r}; searches "
                           f"present (oldest first): {', '.join(present)}")
    return list(dict.fromkeys(wanted))


POOL_KEYS = ["base_model", "target", "policy", "intermediate", "seed"]


def _check_poolable(df: pd.DataFrame) -> None:
    """Pooled searches may add targets, tasks or seeds, or share cells (same settings, same cell id); two cells of
    the same task, target and seed under other settings would count one observation twice."""
    cells = df.drop_duplicates([*POOL_KEYS, "cell_id"])
    clash = cells[cells.duplicated(POOL_KEYS, keep=False)]
    if clash.empty:
        return
    first = clash.iloc[0]
    searches = sorted(set(clash.loc[(clash[POOL_KEYS] == first[POOL_KEYS]).all(axis=1), "search_id"]))
    n = len(clash.drop_duplicates(POOL_KEYS))
    raise CompareError(f"searches {', '.join(searches)} both have {first['intermediate']} -> {first['target']} seed "
                       f"{first['seed']} ({first['base_model']}) under other settings (another cell id), and "
                       f"{n - 1} more such cell(s): pooled, one task and seed would count twice; compare them one "
                       "at a time (--search ID)")


def _stage1_records(reader: RunReader, experiment_id: str, keys: set[str]) -> dict[str, dict[str, Any]]:
    """stage1_key -> what its latest finished stage-1 run logged (the checkpoint's own English dev scores).

    Read across the whole experiment: a search reuses a checkpoint an earlier search trained (same key)."""
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    for position, run in enumerate(reader.stage_runs(experiment_id, schema.STAGE1)):
        key = run.tags.get(schema.STAGE1_KEY_TAG)
        if run.status != FINISHED or not key or key not in keys:
            continue
        order = (run.start_time or 0, position)
        if key not in out or order > out[key][0]:
            tasks = [t for t in run.tags.get(schema.INTERMEDIATE_TASKS_TAG, "").split(",") if t]
            out[key] = (order, {"run_id": run.run_id, "intermediate": run.tags.get(schema.INTERMEDIATE_TAG, ""),
                                "tasks": tasks or [run.tags.get(schema.INTERMEDIATE_TAG, "")],
                                "metrics": {k: v for k, v in run.metrics.items() if k != schema.TRAIN_LOSS}})
    return {key: record for key, (_, record) in out.items()}


def load_runs(experiment: str, tracking_uri: str | None = None, search: str | None = None) -> pd.DataFrame:
    """One row per (cell, policy, language) of the run each policy selected in every cell; columns `COLUMNS`.

    ``search``: None (the experiment's latest search), ``all`` (every search, pooled) or comma-separated search
    ids. ``attrs`` of the result: experiment, experiment_id, tracking_uri, searches (the ids read),
    search_ids (every id present, oldest first), parent_run_ids (the search runs the selected runs belong to),
    counts (runs, cells, selected, running, failed, killed, incomplete, not_selected, pending and empty cells,
    policies_disagree), metrics (target -> primary metric) and stage1 (stage1_key -> the checkpoint's stage-1
    run: its English dev scores). Raises CompareError for an unknown experiment or search, or one without
    stage-2 / retrieval runs, or without any finished one.
    """
    reader, exp = open_experiment(experiment, tracking_uri)
    every = [run for stage in schema.CHILD_STAGES for run in reader.stage_runs(exp.experiment_id, stage)]
    if not every:
        raise CompareError(f"experiment {exp.name!r} has no stage-2 or retrieval runs (nothing to compare yet)")
    search_runs = reader.stage_runs(exp.experiment_id, schema.SEARCH_STAGE)
    present = _search_order(search_runs, every)
    chosen = choose_searches(search, present, exp.name)
    runs = [run for run in every if not chosen or run.tags.get(schema.SEARCH_ID_TAG) in chosen]
    if not runs:
        raise CompareError(f"search {', '.join(chosen)} of experiment {exp.name!r} has no stage-2 or retrieval runs "
                           f"(nothing to compare yet); searches present: {', '.join(present)}")

    by_cell: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_cell[run.tags.get(schema.CELL_TAG) or f"run:{run.run_id}"].append(run)

    status = Counter(run.status for run in runs)
    counts = {"runs": len(runs), "cells": len(by_cell), "selected": 0,
              "running": sum(status[s] for s in ACTIVE_STATUSES), "failed": status[FAILED],
              "killed": status[KILLED], "incomplete": 0, "not_selected": 0, "pending_cells": 0,
              "empty_cells": 0, "policies_disagree": 0, "unranked_policy_cells": 0}
    rows: list[dict[str, Any]] = []
    metrics_by_target: dict[str, str] = {}
    parents: Counter = Counter()
    for cell_runs in by_cell.values():
        usable = []
        for run in cell_runs:
            metric = primary_metric(run.tags, run.metrics) if run.status == FINISHED else None
            if _usable(run, metric):
                usable.append((run, metric))
            elif run.status == FINISHED:
                counts["incomplete"] += 1
        if not usable:
            active = any(r.status in ACTIVE_STATUSES for r in cell_runs)
            counts["pending_cells" if active else "empty_cells"] += 1
            continue
        picks, unranked = _select_per_policy(usable)
        counts["unranked_policy_cells"] += unranked > 0
        picked = {run.run_id for run, _ in picks.values()}
        counts["selected"] += 1
        counts["not_selected"] += len(usable) - len(picked)
        counts["policies_disagree"] += len(picked) > 1
        for policy, (run, metric) in picks.items():
            rows += _policy_rows(run, metric, policy)
        run, metric = next(iter(picks.values()))  # the declared policy's pick
        metrics_by_target.setdefault(run.tags.get(schema.TARGET_TAG, ""), metric)
        parents[run.tags.get(schema.PARENT_TAG)] += 1

    if not rows:
        raise CompareError(f"experiment {exp.name!r} has {counts['runs']} stage-2/retrieval runs but none finished "
                           f"with final metrics yet ({counts['running']} running, {counts['failed']} failed)")
    df = pd.DataFrame(rows, columns=COLUMNS)
    if len(chosen) > 1:
        _check_poolable(df)
    df = df.sort_values(["target", "base_model", "policy", "intermediate", "seed", "language"],
                        kind="stable").reset_index(drop=True)
    stage1 = _stage1_records(reader, exp.experiment_id, set(df["stage1_key"]) - {""})
    df.attrs.update(experiment=exp.name, experiment_id=exp.experiment_id, tracking_uri=tracking_uri,
                    searches=chosen, search_ids=present,
                    parent_run_ids=[p for p, _ in parents.most_common() if p], counts=counts,
                    metrics=metrics_by_target, stage1=stage1,
                    budget={r.tags.get(schema.SEARCH_ID_TAG, ""): b for r in search_runs
                            if (not chosen or r.tags.get(schema.SEARCH_ID_TAG) in chosen)
                            and (b := budget_of(r)) is not None})
    return df


def budget_of(parent: RunRecord) -> dict[str, Any] | None:
    """What a budgeted search's parent run says of its rounds (`xgrid.tracking_schema.budget_key`): the design,
    each target's latest decision, and what the rounds spent against the fixed design. None for other searches."""
    method = parent.tags.get(schema.BUDGET_METHOD_TAG)
    if method is None:
        return None
    targets: dict[str, dict[str, Any]] = defaultdict(dict)
    spent, fixed = {}, {}
    for key, value in [*parent.tags.items(), *parent.metrics.items()]:
        if not key.startswith(schema.BUDGET_PREFIX) or key == schema.BUDGET_METHOD_TAG:
            continue
        name, _, field = key[len(schema.BUDGET_PREFIX):].rpartition(".")
        if name == "spent":
            spent[field] = int(value)
        elif name == "fixed":
            fixed[field] = int(value)
        elif name:
            targets[name][field] = value
    return {"method": method, "targets": dict(targets), "spent": spent, "fixed": fixed}
