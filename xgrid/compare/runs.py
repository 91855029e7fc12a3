"""Read a search back from MLflow: one result row per (cell, selection policy, language).

Names follow `xgrid.tracking_schema` exactly. A cell (tag ``cell_id``) usually has several stage-2 trials (the
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

import difflib
import math
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

import pandas as pd

from xgrid import tracking_schema as schema

__all__ = ["CompareError", "COLUMNS", "POLICIES", "find_experiment", "load_runs", "open_client", "search_all_runs"]

# The two model-selection policies a run reports (RESEARCH pitfall 1): English dev is true zero-shot,
# target-language dev is an oracle.
POLICIES = ("english_dev", "target_dev")
DEFAULT_POLICY = "english_dev"  # SearchSpace.selection_policy's default, for runs written without the tag
AGGREGATES = ("avg", "avg_xling")
METRIC_TAG = "target_metric"  # optional: the writer may name the target's primary metric explicitly
CHILD_STAGES = (schema.STAGE2, schema.RETRIEVAL)
ACTIVE_STATUSES = ("RUNNING", "SCHEDULED")
# Metric families a run logs besides the target's final metrics: never a primary metric.
_NOT_PRIMARY = {"dev", "select", "best", "train_loss", *POLICIES}

COLUMNS = ["base_model", "target", "target_group", "target_format", "policy", "intermediate", "kind", "seed",
           "language", "score", "own_data", "run_id", "learning_rate",
           # extras: where the row comes from
           "cell_id", "metric", "declared_policy", "stage"]


class CompareError(ValueError):
    """Bad input for `xgrid compare` (unknown experiment, nothing to compare): one clear line for the user."""


# ---------------------------------------------------------------------------------------------------------------
# MLflow access
# ---------------------------------------------------------------------------------------------------------------


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if not path or path == "/:memory:":
        return None
    # sqlite:///relative.db -> path "/relative.db"; sqlite:////abs.db -> "//abs.db": drop one slash
    return Path(path[1:])


def open_client(tracking_uri: str | None):
    """An MlflowClient for the URI; a SQLite store that does not exist is an error (MLflow would create it)."""
    from mlflow import MlflowClient

    if tracking_uri:
        db = _sqlite_path(tracking_uri)
        if db is not None and not db.is_file():
            raise CompareError(f"no MLflow store at {db} (tracking URI {tracking_uri}); pass --tracking-uri, "
                               "or run `xgrid search` first")
    return MlflowClient(tracking_uri=tracking_uri)


def _all_experiment_names(client) -> list[str]:
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        names += [e.name for e in page]
        token = page.token
        if not token:
            return names


def find_experiment(client, experiment: str):
    """The experiment by name, or by id when `experiment` is numeric; CompareError with a did-you-mean if none."""
    found = client.get_experiment_by_name(experiment)
    if found is None and experiment.isdigit():
        try:
            found = client.get_experiment(experiment)
        except Exception:  # MlflowException RESOURCE_DOES_NOT_EXIST
            found = None
    if found is not None and found.lifecycle_stage == "deleted":
        raise CompareError(f"experiment {experiment!r} is deleted (restore it with `mlflow experiments restore`)")
    if found is not None:
        return found
    names = _all_experiment_names(client)
    close = difflib.get_close_matches(experiment, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    listed = ", ".join(repr(n) for n in sorted(names)[:20]) + (" ..." if len(names) > 20 else "")
    raise CompareError(f"no MLflow experiment {experiment!r}{hint} (existing: {listed or 'none'})")


def search_all_runs(client, experiment_id: str, filter_string: str = "") -> list:
    """Every active run matching the filter, all pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=5000,
                                  page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


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
        if sep and tail == "avg" and "." not in head and head not in _NOT_PRIMARY:
            out.add(head)
    return sorted(out)


def primary_metric(tags: dict[str, str], metrics: dict[str, float]) -> str | None:
    """The target's primary metric for one run (see the module docstring); None when the run has no final metric.

    Raises CompareError when several `<metric>.avg` are logged and neither a tag nor the registry decides."""
    if tags.get(METRIC_TAG):
        return tags[METRIC_TAG]
    candidates = _metric_candidates(metrics)
    if not candidates:
        return None
    known = _registry_metric(tags.get("target", ""))
    if known in candidates:
        return known
    if len(candidates) == 1:
        return candidates[0]
    raise CompareError(f"cannot tell the primary metric of target {tags.get('target')!r}: the runs log "
                       f"{', '.join(c + '.avg' for c in candidates)}; tag the runs with {METRIC_TAG!r} or register "
                       "the target in the task registry")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _declared(tags: dict[str, str]) -> str:
    return tags.get(schema.POLICY_TAG) or DEFAULT_POLICY


def _usable(run, metric: str | None) -> bool:
    return (run.info.status == "FINISHED" and metric is not None and f"{metric}.avg" in run.data.metrics
            and run.data.tags.get(schema.STATUS_TAG, "completed") == "completed")


def _rank_key(run):
    best = run.data.metrics.get(f"best.{_declared(run.data.tags)}")
    lr = _float(run.data.params.get("learning_rate"))
    return (-best if best is not None and not math.isnan(best) else math.inf,
            lr if not math.isnan(lr) else math.inf, run.info.run_id)


def _languages(metrics: dict[str, float], prefix: str) -> list[str]:
    langs = []
    for name in metrics:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest and "." not in rest and rest not in AGGREGATES:
                langs.append(rest)
    return sorted(langs)


def _rows(run, metric: str) -> Iterable[dict[str, Any]]:
    tags, metrics = run.data.tags, run.data.metrics
    declared = _declared(tags)
    others = [p for p in POLICIES if p != declared]
    try:
        seed = int(tags.get("seed", ""))
    except ValueError:
        raise CompareError(f"run {run.info.run_id}: tag seed={tags.get('seed')!r} is not an integer") from None
    common = {"base_model": tags.get("base_model", ""), "target": tags.get("target", ""),
              "target_group": tags.get("target_group", ""), "target_format": tags.get("target_format", ""),
              "intermediate": tags.get("intermediate", ""), "kind": tags.get(schema.KIND_TAG, ""), "seed": seed,
              "own_data": tags.get("own_data", "false").lower() == "true", "run_id": run.info.run_id,
              "learning_rate": _float(run.data.params.get("learning_rate")), "cell_id": tags.get("cell_id"),
              "metric": metric, "declared_policy": declared, "stage": tags.get(schema.STAGE)}
    for policy in [declared, *others]:
        prefix = f"{metric}." if policy == declared else f"{policy}.{metric}."
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
    client = open_client(tracking_uri)
    exp = find_experiment(client, experiment)
    runs = []
    for stage in CHILD_STAGES:
        runs += search_all_runs(client, exp.experiment_id, f"tags.{schema.STAGE} = '{stage}'")
    if not runs:
        raise CompareError(f"experiment {exp.name!r} has no stage-2 or retrieval runs (nothing to compare yet)")

    by_cell: dict[str, list] = defaultdict(list)
    for run in runs:
        by_cell[run.data.tags.get("cell_id") or f"run:{run.info.run_id}"].append(run)

    status = Counter(run.info.status for run in runs)
    counts = {"runs": len(runs), "cells": len(by_cell), "selected": 0,
              "running": sum(status[s] for s in ACTIVE_STATUSES), "failed": status["FAILED"],
              "killed": status["KILLED"], "incomplete": 0, "not_selected": 0, "pending_cells": 0,
              "empty_cells": 0}
    rows: list[dict[str, Any]] = []
    metrics_by_target: dict[str, str] = {}
    parents: Counter = Counter()
    for cell_id, cell_runs in by_cell.items():
        usable = []
        for run in cell_runs:
            metric = primary_metric(run.data.tags, run.data.metrics) if run.info.status == "FINISHED" else None
            if _usable(run, metric):
                usable.append((run, metric))
            elif run.info.status == "FINISHED":
                counts["incomplete"] += 1
        if not usable:
            active = any(r.info.status in ACTIVE_STATUSES for r in cell_runs)
            counts["pending_cells" if active else "empty_cells"] += 1
            continue
        run, metric = min(usable, key=lambda pair: _rank_key(pair[0]))
        counts["selected"] += 1
        counts["not_selected"] += len(usable) - 1
        metrics_by_target.setdefault(run.data.tags.get("target", ""), metric)
        parents[run.data.tags.get(schema.PARENT_TAG)] += 1
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
