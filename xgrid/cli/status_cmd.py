"""`xgrid status [SEARCH_DIR]`: what a search (running, finished or cut off) has done and what is left, per target,
read from its folder, MLflow and its Optuna studies (see `xgrid.search.status`): from another terminal, or after
a crash."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console, fail
from xgrid.search.eta import duration
from xgrid.tracking_schema import default_tracking_uri

DEFAULT_OUTPUT_DIR = Path("xgrid_runs")
# A status is a glance: an MLflow server that does not answer is a note after seconds, not minutes of retries.
# Only set when the user has not set them.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def status(
    search_dir: Annotated[Optional[Path], typer.Argument(
        help="a search folder (<output-dir>/<space>/<timestamp>), or a folder of them (its latest); "
             "default: the latest search under --output-dir", show_default=False)] = None,
    output_dir: Annotated[Optional[Path], typer.Option(
        help="where search folders are written, as `xgrid search` (default: xgrid_runs, or the folder that holds "
             "SEARCH_DIR's space folder)", envvar="XGRID_OUTPUT_DIR", show_default=False)] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(
        help="MLflow tracking URI; default: sqlite:///<output-dir>/mlflow.db, as `xgrid search`",
        envvar="MLFLOW_TRACKING_URI", show_default=False)] = None,
    experiment: Annotated[Optional[str], typer.Option(
        help="MLflow experiment of the search (default: the space's name, as `xgrid search`)",
        show_default=False)] = None,
    stale_after: Annotated[float, typer.Option(
        min=0, help="minutes without anything new after which an unfinished search is reported stalled")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON (for scripts)")] = False,
) -> None:
    """What a search has done and what is left, per target: cells, trials, best so far, time spent and ETA."""
    from xgrid.search.status import StatusError, latest_search_dir, search_status

    if search_dir is None:
        root = output_dir or DEFAULT_OUTPUT_DIR
        found = latest_search_dir(root)
        if found is None:
            raise fail(f"no search folder under {root.absolute()} (run `xgrid search` first, or pass SEARCH_DIR "
                       "or --output-dir)")
    else:
        found = latest_search_dir(search_dir)
        if found is None:
            what = "is not a search folder (no plan.json)" if search_dir.is_dir() else "does not exist"
            raise fail(f"{search_dir.absolute()} {what}")
        # <output-dir>/<space>/<timestamp>: the store of a search given by path is the one beside it
        root = output_dir or found.absolute().parent.parent
    uri = tracking_uri or default_tracking_uri(root)
    try:
        with _quick_http():
            result = search_status(found, uri, experiment, stale_after_s=stale_after * 60)
    except StatusError as err:
        raise fail(str(err)) from None
    if as_json:
        console.print_json(data=result.to_dict())
        return
    print_status(result)


@contextmanager
def _quick_http():
    unset = [name for name in QUICK_HTTP if name not in os.environ]
    os.environ.update({name: QUICK_HTTP[name] for name in unset})
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)


# ---------------------------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------------------------


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _best(ts) -> str:
    b = ts.best
    if b is None:
        return "-" if ts.completed is not None else "?"
    where = [f"{b.avg_metric} {b.avg:.2f}"] if b.avg is not None and b.avg_metric != b.metric else []
    where += [" ".join(x for x in (b.intermediate, f"s{b.seed}" if b.seed is not None else None) if x)]
    where += [f"lr {b.learning_rate:.2g}"] if b.learning_rate is not None else []
    return f"{b.score:.2f} {b.metric} ({', '.join(w for w in where if w)})"


def _eta(ts, state: str) -> str:
    if ts.state == "done":
        return "-"
    if state != "running" and ts.eta_s is None:
        return "-"  # nothing runs any more
    return duration(ts.eta_s)


def target_table(result) -> Table:
    table = Table(title=f"targets of {result.search_id}", title_justify="left")
    for column in ("target", "format", "state", "cells done", "trials", "completed", "stopped", "failed",
                   "running", "left", "best so far", "spent", "median trial", "ETA", "from"):
        table.add_column(column, justify="right" if column in {"cells done", "trials", "completed", "stopped",
                                                                "failed", "running", "left", "spent",
                                                                "median trial", "ETA"} else "left")
    for ts in result.targets:
        kind = "" if ts.trains is not False else " (scored)"
        trials = f"{ts.planned}" + (f" ({ts.trials_per_cell}/cell)" if ts.trials_per_cell > 1 else "")
        failed = _count(ts.failed) + (f" +{ts.cut_off} cut off" if ts.cut_off else "")
        cells = f"{_count(ts.cells_done)}/{ts.cells}"
        spent = ("Σ " if ts.spent_is_sum else "") + duration(ts.spent_s) if ts.spent_s is not None else "-"
        median = duration(ts.median_trial_s) if ts.median_trial_s is not None else "-"
        table.add_row(ts.target, ts.format + kind, ts.state, cells, trials, _count(ts.completed), _count(ts.stopped),
                      failed, _count(ts.running), _count(ts.left), _best(ts), spent, median, _eta(ts, result.state),
                      ts.source)
    return table


def print_status(result) -> None:
    console.print(f"[bold]space[/] {result.space} · [bold]folder[/] {result.search_dir} · [bold]state[/] "
                  f"{result.state} · [bold]stage 1[/] {result.stage1.describe()}", soft_wrap=True, highlight=False)
    started = result.started_at.strftime("%Y-%m-%d %H:%M:%S") if result.started_at else "unknown"
    last = result.last_activity.strftime("%Y-%m-%d %H:%M:%S") if result.last_activity else "unknown"
    eta = duration(result.eta_s) if result.state == "running" else "-"
    mlflow = (f"{result.tracking_uri} (experiment {result.experiment!r})" if result.mlflow_read
              else "not read (see the note)")
    console.print(f"started {started} · last activity {last} · spent {duration(result.spent_s)} · ETA {eta} · "
                  f"{result.concurrency} trials at once · MLflow {mlflow}", soft_wrap=True, highlight=False)
    console.print(target_table(result))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True, highlight=False)
