"""`xgrid search [SPACE]`: validate the space, print its plan (--dry-run), or run it on Ray."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import (FormatOption, JsonOption, OutputFormat, console, fail, output_format, read_space,
                              user_errors)
from xgrid.cli.plan_view import plan_json, print_plan
from xgrid.planning.plan import Plan, build_plan
from xgrid.tasks import default_registry
from xgrid.tracking_schema import ENGLISH_DEV, default_tracking_uri


def search(
    space: Annotated[Optional[Path], typer.Argument(help="search-space YAML file, or the name of a shipped space (microbench-default, x-stilts-reproduction, xtreme-r-syntactic-vs-semantic); default: the embedded micro-benchmark")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and print the plan and its cost; run nothing")] = False,
    address: Annotated[Optional[str], typer.Option(help="join a running Ray cluster from one of its nodes "
                                                         "(auto, or HEAD_IP:6379); default: start local Ray", envvar="RAY_ADDRESS")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI (http://mlflow:5000); default: "
                                                              "sqlite:///<output-dir>/mlflow.db", envvar="MLFLOW_TRACKING_URI")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment name (default: the space's name)")] = None,
    output_dir: Annotated[Path, typer.Option(help="where search folders are written", envvar="XGRID_OUTPUT_DIR")] = Path("xgrid_runs"),
    store_root: Annotated[Optional[str], typer.Option(help="stage-1 checkpoint store: a folder every node sees, or "
                                                            "s3://... (default: <output-dir>/store)", envvar="XGRID_STORE_ROOT")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option(help="trials running at once (overrides the space)")] = None,
    workers_per_trial: Annotated[Optional[int], typer.Option(help="Ray Train workers per trial (DDP/FSDP)")] = None,
    cpus_per_worker: Annotated[Optional[float], typer.Option(help="CPUs per worker")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(help="GPUs per worker")] = None,
    trial_backend: Annotated[Optional[str], typer.Option(help="auto | ray_train | inline (see README: trial overhead)")] = None,
    fmt: FormatOption = None,  # json: with --dry-run only
    as_json: JsonOption = False,
) -> None:
    """Run a transfer grid: stage 1 trains each intermediate checkpoint once, stage 2 searches each target."""
    from xgrid.search.options import SearchOptions

    as_json = output_format(fmt, as_json) is OutputFormat.json
    if as_json and not dry_run:  # a running search prints live progress; its results are in results.json
        raise fail("--format json needs --dry-run: a running search prints live progress, not JSON "
                   "(its results go to the search folder's results.json)")
    registry = default_registry()
    config = read_space(space, registry)
    with user_errors():
        config = config.with_resources({"max_concurrent_trials": max_concurrent,
                                        "workers_per_trial": workers_per_trial, "cpus_per_worker": cpus_per_worker,
                                        "gpus_per_worker": gpus_per_worker, "trial_backend": trial_backend})
    plan = build_plan(config, registry)
    options = SearchOptions(output_root=output_dir, store_root=store_root, address=address)
    if as_json:
        console.print_json(data=plan_json(plan, options.store))
        return
    print_plan(plan, options.store)
    if dry_run:
        return
    run_and_report(plan, options, tracking_uri or default_tracking_uri(output_dir), experiment or config.name)


def run_and_report(plan: Plan, options, tracking_uri: str, experiment: str) -> None:
    from dataclasses import replace

    from xgrid.search.progress import Progress
    from xgrid.search.runner import SearchSetupError, check_address, run_search
    from xgrid.search.stage1 import Stage1Error
    from xgrid.search.stage2 import selection_metric
    from xgrid.tracking import open_writer
    from xgrid.tracking.listener import TrackingListener

    def ready(search_dir, dashboard):
        # soft_wrap: a path is one line even in a narrow terminal, so it can be copied whole
        console.print(f"search folder: {search_dir}", soft_wrap=True, highlight=False)
        console.print(f"Ray dashboard: {dashboard or 'see your cluster'}", soft_wrap=True, highlight=False)

    try:
        check_address(options)  # before the tracker creates anything: a refused search leaves nothing behind
        tracker = TrackingListener(open_writer(tracking_uri, experiment))
        progress = Progress(console, selection_metric(plan.space))
        outcome = run_search(plan, replace(options, listeners=(tracker, progress)), on_ready=ready)
    except SearchSetupError as err:
        raise fail(str(err)) from None
    except Stage1Error as err:
        raise fail(str(err), code=1) from None
    print_results(outcome, tracker, experiment)


def print_results(outcome, tracker, experiment: str) -> None:
    for target in outcome.plan.space.targets:
        rows = [r for r in outcome.best if r["target"] == target]
        task = outcome.plan.target_task(target)
        metric = task.metric
        table = Table(title=f"{target}: best trial per cell ({metric}, zero-shot)")
        languages = [l for l in task.languages if any(f"{metric}.{l}" in r for r in rows)]
        for column in ("intermediate", "kind", "seed", "best lr", "en dev", "avg", "avg w/o en", *languages,
                       "trials (stopped/failed)"):
            table.add_column(column)
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        for r in sorted(rows, key=lambda r: (r["intermediate"], r["seed"])):
            lr = r.get("learning_rate")
            table.add_row(r["intermediate"], r["intermediate_kind"], r["seed"], "-" if not lr else f"{lr:.2g}",
                          fmt(r.get(ENGLISH_DEV)), fmt(r.get("avg")), fmt(r.get("avg_xling")),
                          *[fmt(r.get(f"{metric}.{l}")) for l in languages],
                          f"{r['trials']} ({r['stopped']}/{r['failed']})")
        console.print(table)
    failed = [r for records in outcome.records.values() for r in records if r.status == "failed"]
    for error, count in Counter(r.error or "unknown error" for r in failed).most_common(5):
        console.print(f"[red]{count} trial(s) failed:[/] {error}", highlight=False, soft_wrap=True)
    console.print(f"stage 1: {outcome.stage1_trained} checkpoints trained, {outcome.stage1_reused} reused")
    uri = tracker.tracking_uri
    console.print(f"MLflow: experiment {experiment!r} (id {tracker.experiment_id}) "
                  f"at {uri}; UI: mlflow ui --backend-store-uri {uri}; then xgrid compare {experiment}", soft_wrap=True)
    console.print(f"done in {outcome.seconds:.0f} s. Results: {outcome.search_dir}/results.csv (best per cell), "
                  f"results.json (every trial); Optuna studies: optuna-dashboard sqlite:///{outcome.search_dir}/optuna.db",
                  soft_wrap=True)
