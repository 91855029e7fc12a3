"""`run_search`: the whole grid on Ray. Stage 1 trains each unique intermediate checkpoint once; stage 2 runs
one Tuner per target. Results, the resolved space, the plan and the Optuna studies land in the search folder."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from xgrid.config import SearchSpace
from xgrid.plan import Plan, build_plan
from xgrid.search.events import Listeners, SearchListener, TrialRecord
from xgrid.search.options import SearchOptions, effective_space
from xgrid.search.results import best_per_cell, write_results
from xgrid.search.stage1 import run_stage1
from xgrid.search.stage2 import run_target
from xgrid.store import is_uri
from xgrid.tasks import TaskRegistry


class SearchSetupError(RuntimeError):
    """The search cannot start as asked (a user-facing message, no traceback)."""


@dataclass
class SearchOutcome:
    search_dir: Path
    plan: Plan
    stage1_trained: int
    stage1_reused: int
    records: dict[str, list[TrialRecord]]
    best: list[dict[str, Any]]
    seconds: float
    dashboard_url: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class _Stage1Count(SearchListener):
    def __init__(self):
        self.trained = self.reused = 0

    def stage1_finished(self, job, trained, result):
        if job.trains:
            self.trained += trained
            self.reused += not trained


def new_search_dir(options: SearchOptions, space: SearchSpace) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = (options.output_root / space.name / stamp).absolute()
    path.mkdir(parents=True, exist_ok=False)
    return path


def check_address(options: SearchOptions) -> None:
    if options.address and options.address.startswith("ray://"):
        # Ray Client runs Tuner.fit() in an actor on the head node: the driver-side listeners (progress, MLflow,
        # results) would never hear a trial, and the Optuna storage path would be the client's.
        raise SearchSetupError(
            f"--address {options.address}: Ray Client (ray://) cannot drive a search from outside the cluster; "
            "run the driver on the cluster instead: `ray job submit --address http://HEAD:8265 -- xgrid search ...` "
            "or, on a cluster node, `xgrid search ... --address auto` (see docker/README.md)")


def start_ray(options: SearchOptions) -> tuple[bool, str | None]:
    """Start local Ray (dashboard on 127.0.0.1 only) or join `options.address`. Returns (started, dashboard)."""
    import ray

    if ray.is_initialized():
        return False, None
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if options.address:
        context = ray.init(address=options.address, **kwargs)
    else:
        context = ray.init(include_dashboard=True, dashboard_host="127.0.0.1", **kwargs | options.ray_init)
    url = getattr(context, "dashboard_url", None)
    return True, (f"http://{url}" if url and not url.startswith("http") else url)


def run_search(space: SearchSpace, registry: TaskRegistry, options: SearchOptions = SearchOptions(),
               listener: SearchListener | None = None, on_ready=None) -> SearchOutcome:
    import ray

    started_at = time.perf_counter()
    check_address(options)  # before anything is written: a refused search leaves no folder behind
    space = effective_space(space, options)
    plan = build_plan(space, registry)
    search_dir = new_search_dir(options, space)
    (search_dir / "space.yaml").write_text(yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False))
    (search_dir / "plan.json").write_text(json.dumps(
        {"jobs": [asdict(j) for j in plan.jobs], "cells": [c.tags() for c in plan.cells], "notes": plan.notes},
        indent=1, default=str))
    storage_path = (f"{options.store.rstrip('/')}/ray/{search_dir.name}" if is_uri(options.store)
                    else str(search_dir / "ray"))
    counter = _Stage1Count()
    tracker = None
    if options.tracking:
        from xgrid.tracking import MlflowTracker, default_tracking_uri

        tracker = MlflowTracker(options.tracking_uri or default_tracking_uri(options.output_root),
                                options.experiment or space.name, space, registry)
    events = Listeners(counter, tracker, listener)
    started, dashboard = start_ray(options)
    if on_ready is not None:
        on_ready(search_dir, dashboard)
    status = "FAILED"
    records: dict[str, list[TrialRecord]] = {}
    try:
        events.search_started(plan, str(search_dir))
        encoders = run_stage1(plan, registry, options.store, storage_path, events)
        for target in space.targets:
            records[target] = run_target(target, plan, registry, encoders, search_dir, storage_path, events)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        best = best_per_cell([r for rs in records.values() for r in rs], space, registry)
        write_results(search_dir, records, best)  # also on failure: never lose finished trials
        events.search_finished(status)
        if started:
            ray.shutdown()
    return SearchOutcome(search_dir, plan, counter.trained, counter.reused, records, best,
                         time.perf_counter() - started_at, dashboard,
                         {"mlflow_experiment_id": tracker.experiment_id, "mlflow_parent_run_id": tracker.parent_id,
                          "tracking_uri": tracker.tracking_uri} if tracker else {})
