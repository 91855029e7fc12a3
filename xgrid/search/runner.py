"""`run_search`: a finished plan, run on Ray. Stage 1 trains each unique intermediate checkpoint once; stage 2
runs one Tuner per target. Results, the resolved space, the plan and the Optuna studies land in the search
folder; everything else (live progress, tracking) hears the search through the listeners of the options."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from xgrid.events import Listeners, SearchListener, TrialRecord
from xgrid.planning.plan import Plan
from xgrid.running.store import is_uri
from xgrid.search.options import SearchOptions
from xgrid.search.results import best_per_cell, write_results
from xgrid.search.stage1 import run_stage1
from xgrid.search.stage2 import search_target


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


class _Stage1Count(SearchListener):
    def __init__(self):
        self.trained = self.reused = 0

    def stage1_finished(self, job, trained, result):
        if job.trains:
            self.trained += trained
            self.reused += not trained


def new_search_dir(options: SearchOptions, plan: Plan) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = (options.output_root / plan.space.name / stamp).absolute()
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


def write_search_files(search_dir: Path, plan: Plan) -> None:
    """The resolved space and the plan, before anything runs: what a reader of the folder needs to know."""
    (search_dir / "space.yaml").write_text(yaml.safe_dump(plan.space.model_dump(mode="json"), sort_keys=False))
    (search_dir / "plan.json").write_text(json.dumps(plan.describe(), indent=1, default=str))


def run_search(plan: Plan, options: SearchOptions = SearchOptions(), on_ready=None) -> SearchOutcome:
    import ray

    started_at = time.perf_counter()
    check_address(options)  # before anything is written: a refused search leaves no folder behind
    search_dir = new_search_dir(options, plan)
    write_search_files(search_dir, plan)
    storage_path = (f"{options.store.rstrip('/')}/ray/{search_dir.name}" if is_uri(options.store)
                    else str(search_dir / "ray"))
    counter = _Stage1Count()
    events = Listeners(counter, *options.listeners)
    started, dashboard = start_ray(options)
    if on_ready is not None:
        on_ready(search_dir, dashboard)
    status = "FAILED"
    records: dict[str, list[TrialRecord]] = {}
    try:
        events.search_started(plan, str(search_dir))
        encoders = run_stage1(plan, options.store, storage_path, events)
        for target in plan.space.targets:
            records[target] = search_target(target, plan, encoders, search_dir, storage_path, events)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        best = best_per_cell([r for rs in records.values() for r in rs], plan.space)
        write_results(search_dir, records, best)  # also on failure: never lose finished trials
        events.search_finished(status)
        if started:
            ray.shutdown()
    return SearchOutcome(search_dir, plan, counter.trained, counter.reused, records, best,
                         time.perf_counter() - started_at, dashboard)
