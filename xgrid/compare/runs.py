"""Read a search back from its tracking store: one result row per (cell, selection policy, language).

Runs come through `xgrid.tracking.open_reader` as plain `RunRecord`s, so any backend with a reader will do; names
follow `xgrid.tracking_schema` exactly. A cell (tag ``cell_id``) usually has several stage-2 trials (the
learning rate is searched inside the cell); the one kept is, among the FINISHED runs that carry the final metric
``<metric>.avg``, the one with the highest ``best.<selection_policy>`` (ties: lowest learning rate, then run id).
That is the rule `xgrid.search.results.best_per_cell` applies to ``results.csv``, so both agree. Retrieval cells
have a single run and no learning rate. RUNNING runs (a search still in progress) never take part in the
selection; they are counted, and so are the runs left out for any other reason (``DataFrame.attrs``).

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

__all__ = ["CompareError", "COLUMNS", "load_runs", "open_experiment", "primary_metric"]

COLUMNS = ["base_model", "target", "target_group", "target_format", "policy", "intermediate", "kind", "seed",
           "language", "score", "own_data", "run_id", "learning_rate",
           # extras: where the row comes from
           "cell_id", "metric", "declared_policy", "stage"]


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


@lru_cache(maxsize=None)
def _registry_metric(target: str) -> str | None:
    try:
        from xgrid.tasks import default_registry

        registry = default_registry()
        return registry.get(target).metric if target in registry else None
    except Exception:  # a registry that cannot load must not stop a read-back
        return None


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


def _rank_key(run: RunRecord):
    best = run.metrics.get(schema.best_metric(_declared(run.tags)))
    lr = _float(run.params.get(schema.LEARNING_RATE))
    return (-best if best is not None and not math.isnan(best) else math.inf,
            lr if not math.isnan(lr) else math.inf, run.run_id)


def _languages(metrics: dict[str, float], prefix: str) -> list[str]:
    langs = []
    for name in metrics:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest and "." not in rest and rest not in schema.AGGREGATES:
                langs.append(rest)
    return sorted(langs)


def _rows(run: RunRecord, metric: str) -> Iterable[dict[str, Any]]:
    tags, metrics = run.tags, run.metrics
    declared = _declared(tags)
    others = [p for p in schema.POLICIES if p != declared]
    try:
        seed = int(tags.get(schema.SEED_TAG, ""))
    except ValueError:
        raise CompareError(f"run {run.run_id}: tag seed={tags.get(schema.SEED_TAG)!r} is not an integer") from None
    common = {"base_model": tags.get(schema.BASE_MODEL_TAG, ""), "target": tags.get(schema.TARGET_TAG, ""),
              "target_group": tags.get(schema.TARGET_GROUP_TAG, ""),
              "target_format": tags.get(schema.TARGET_FORMAT_TAG, ""),
              "intermediate": tags.get(schema.INTERMEDIATE_TAG, ""), "kind": tags.get(schema.KIND_TAG, ""),
              "seed": seed, "own_data": tags.get(schema.OWN_DATA_TAG, "false").lower() == "true",
              "run_id": run.run_id, "learning_rate": _float(run.params.get(schema.LEARNING_RATE)),
              "cell_id": tags.get(schema.CELL_TAG), "metric": metric, "declared_policy": declared,
              "stage": tags.get(schema.STAGE)}
    for policy in [declared, *others]:
        prefix = schema.final_metric_name(metric, "", policy, declared)
        for language in _languages(metrics, prefix):
            name = schema.final_metric_name(metric, language, policy, declared)
            yield common | {"policy": policy, "language": language, "score": float(metrics[name])}


def load_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per (cell, policy, language) of the selected run of every cell; columns `COLUMNS`.

    ``attrs`` of the result: experiment, experiment_id, tracking_uri, parent_run_ids (the search runs the selected
    runs belong to), counts (runs, cells, selected, running, failed, killed, incomplete, not_selected, pending
    cells) and metrics (target -> primary metric). Raises CompareError for an unknown experiment or one without
    stage-2 / retrieval runs, or without any finished one.
    """
    reader, exp = open_experiment(experiment, tracking_uri)
    runs = [run for stage in schema.CHILD_STAGES for run in reader.stage_runs(exp.experiment_id, stage)]
    if not runs:
        raise CompareError(f"experiment {exp.name!r} has no stage-2 or retrieval runs (nothing to compare yet)")

    by_cell: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_cell[run.tags.get(schema.CELL_TAG) or f"run:{run.run_id}"].append(run)

    status = Counter(run.status for run in runs)
    counts = {"runs": len(runs), "cells": len(by_cell), "selected": 0,
              "running": sum(status[s] for s in ACTIVE_STATUSES), "failed": status[FAILED],
              "killed": status[KILLED], "incomplete": 0, "not_selected": 0, "pending_cells": 0,
              "empty_cells": 0}
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
        run, metric = min(usable, key=lambda pair: _rank_key(pair[0]))
        counts["selected"] += 1
        counts["not_selected"] += len(usable) - 1
        metrics_by_target.setdefault(run.tags.get(schema.TARGET_TAG, ""), metric)
        parents[run.tags.get(schema.PARENT_TAG)] += 1
        rows += list(_rows(run, metric))

    if not rows:
        raise CompareError(f"experiment {exp.name!r} has {counts['runs']} stage-2/retrieval runs but none finished "
                           f"with final metrics yet ({counts['running']} running, {counts['failed']} failed)")
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values(["target", "base_model", "policy", "intermediate", "seed", "language"],
                        kind="stable").reset_index(drop=True)
    df.attrs.update(experiment=exp.name, experiment_id=exp.experiment_id, tracking_uri=tracking_uri,
                    parent_run_ids=[p for p, _ in parents.most_common() if p], counts=counts,
                    metrics=metrics_by_target)
    return df
