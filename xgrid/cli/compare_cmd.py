"""`xgrid compare EXPERIMENT`: read a search back from MLflow and ask whether syntactic and semantic intermediate
tasks diverge, with task-level intervals and p-values (see `xgrid.compare.stats`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console, fail
from xgrid.tracking import TrackingError
from xgrid.tracking_schema import default_tracking_uri

DEFAULT_OUTPUT_DIR = Path("xgrid_runs")


def compare(
    experiment: Annotated[str, typer.Argument(help="MLflow experiment of the search (name, or numeric id)")],
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI; default: "
                                                              "sqlite:///<output-dir>/mlflow.db, as `xgrid search`",
                                                         envvar="MLFLOW_TRACKING_URI")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="where the CSVs and figures go (default: "
                                                               "<output-dir>/compare/<experiment>)")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=1, help="bootstrap replicates")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed of the bootstrap and permutation test")] = 0,
    no_log: Annotated[bool, typer.Option("--no-log", help="do not log the files to the search's MLflow run")] = False,
    output_dir: Annotated[Path, typer.Option(help="the search's output folder (for the defaults above)",
                                             envvar="XGRID_OUTPUT_DIR")] = DEFAULT_OUTPUT_DIR,
) -> None:
    """Syntactic vs semantic intermediate tasks of a search: gains over 'none', by target, group and language."""
    from xgrid.compare.report import build_report, log_report, safe_name, write_report
    from xgrid.compare.runs import CompareError, load_runs

    uri = tracking_uri or default_tracking_uri(output_dir)
    try:
        runs = load_runs(experiment, uri)
        report = build_report(runs, n_boot=n_boot, seed=seed)
    except CompareError as err:
        raise fail(str(err)) from None
    except TrackingError as err:  # the server cannot be reached, a store of another version ...
        raise fail(f"MLflow ({uri}): {err}") from None

    print_report(report)
    out_dir = out or output_dir / "compare" / safe_name(report.experiment or experiment)
    files = write_report(report, out_dir)
    console.print(f"wrote {len(files)} files to {out_dir.resolve()}", soft_wrap=True)  # a path: one line, to copy
    if no_log:
        return
    try:
        run_id = log_report(files, report.experiment or experiment, uri, report.parent_run_id)
    except CompareError as err:
        raise fail(str(err)) from None
    except TrackingError as err:
        raise fail(f"logging to MLflow ({uri}) failed, the files are in {out_dir}: {err}", code=1) from None
    console.print(f"logged them to MLflow run {run_id} (experiment {report.experiment!r}) under compare/  ({uri})",
                  soft_wrap=True)


# ---------------------------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------------------------


def _num(value, fmt: str = "{:+.2f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _p(value) -> str:
    return _num(value, "{:.3g}")


def _contrast_table(title: str, table, keys: list[str]) -> Table:
    from xgrid.compare.report import KIND_A, KIND_B

    out = Table(title=title, title_justify="left")
    for key in keys:
        out.add_column(key)
    for column in (f"mean gain {KIND_A}", f"mean gain {KIND_B}", "diff", "95% CI", "p", "n tasks (syn/sem)",
                   "seeds", "note"):
        out.add_column(column, justify="right" if column not in ("note",) else "left")
    for row in table.to_dict("records"):
        ci = "-" if math.isnan(row["low"]) else f"[{row['low']:+.2f}, {row['high']:+.2f}]"
        out.add_row(*[str(row[k]) for k in keys], _num(row[f"mean_{KIND_A}"]), _num(row[f"mean_{KIND_B}"]),
                    _num(row["diff"]), ci, _p(row["p_value"]), f"{row[f'n_{KIND_A}']}/{row[f'n_{KIND_B}']}",
                    str(row["n_seeds"]), row["note"] or "")
    return out


def _keys(table, first: list[str]) -> list[str]:
    extra = [k for k in ("base_model", "policy") if k in table.columns]
    return [*first, *extra]


def print_report(report) -> None:
    c = report.counts
    console.print(f"[bold]experiment[/] {report.experiment}: {c.get('selected', 0)} cells with a result "
                  f"(of {c.get('cells', 0)}), from {c.get('runs', 0)} stage-2/retrieval runs: "
                  f"{c.get('not_selected', 0)} finished trials not selected (other learning rates), "
                  f"{c.get('running', 0)} running, {c.get('failed', 0)} failed, {c.get('killed', 0)} stopped, "
                  f"{c.get('incomplete', 0)} finished without final metrics")
    console.print("contrast: mean gain over the 'none' baseline, syntactic - semantic; unit = intermediate task, "
                  f"95% two-level bootstrap (tasks, then seeds; {report.n_boot} replicates), "
                  "p = permutation test over tasks")
    by_target = report.contrast_by_target
    console.print(_contrast_table("by target", by_target, _keys(by_target, ["target", "metric"])))
    by_group = report.contrast_by_group
    console.print(_contrast_table("by target group", by_group, _keys(by_group, ["target_group", "targets"])))
    flagged = report.flagged
    if not flagged.empty:
        table = Table(title="flagged cells (own English training data, not transfer): left out of the contrasts",
                      title_justify="left")
        for column in ("target", "intermediate", "kind", "base_model", "policy", "seeds", "mean gain"):
            table.add_column(column)
        grouped = flagged.groupby(["target", "intermediate", "kind", "base_model", "policy"], sort=True)
        for key, sub in grouped:
            table.add_row(*[str(k) for k in key], ",".join(str(s) for s in sorted(sub["seed"])),
                          _num(sub["mean_gain"].mean()))
        console.print(table)
    for line in report.headline:
        console.print(f"[bold]answer[/] {line}", soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
