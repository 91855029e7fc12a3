"""`xgrid compare EXPERIMENT`: read a search back from MLflow and ask whether syntactic and semantic intermediate
tasks diverge, with task-level intervals and p-values (see `xgrid.statistics.contrast` and `xgrid.compare.report`)."""

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
    languages: Annotated[str, typer.Option(help="languages the gains average over: zero-shot (every evaluated "
                                                 "language but English), all, or a comma list (xa,xb)")] = "zero-shot",
    search: Annotated[Optional[str], typer.Option(help="the search to read (tag search_id): default the latest; "
                                                       "an id, several comma-separated, or 'all' to pool them")] = None,
    adjust: Annotated[str, typer.Option(help="multiple-comparison adjustment of the by-target contrasts of each "
                                             "policy: holm (family-wise) or bh (false discovery rate)")] = "holm",
    n_boot: Annotated[Optional[int], typer.Option("--n-boot", hidden=True,
                                                  help="ignored: compare uses t-intervals, no bootstrap")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="do not log the files to the search's MLflow run")] = False,
    output_dir: Annotated[Path, typer.Option(help="the search's output folder (for the defaults above)",
                                             envvar="XGRID_OUTPUT_DIR")] = DEFAULT_OUTPUT_DIR,
) -> None:
    """Syntactic vs semantic intermediate tasks of a search: gains over 'none', by target, group and language."""
    from xgrid.compare.report import build_report, log_report, safe_name, write_report
    from xgrid.compare.runs import CompareError, load_runs

    uri = tracking_uri or default_tracking_uri(output_dir)
    try:
        runs = load_runs(experiment, uri, search=search)
        report = build_report(runs, languages=languages, adjust=adjust)
    except CompareError as err:
        raise fail(str(err)) from None
    except TrackingError as err:  # the server cannot be reached, a store of another version ...
        raise fail(f"MLflow ({uri}): {err}") from None

    print_report(report)
    if n_boot is not None:  # scripts written for the bootstrap keep working; the option says nothing any more
        console.print("[yellow]note:[/] --n-boot is ignored: intervals are Welch t-intervals over tasks, there is "
                      "no bootstrap", soft_wrap=True)
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


def _contrast_table(title: str, table, keys: list[str], adjusted: bool = False) -> Table:
    from xgrid.compare.report import KIND_A, KIND_B

    out = Table(title=title, title_justify="left")
    for key in keys:
        out.add_column(key)
    columns = [f"mean gain {KIND_A}", f"mean gain {KIND_B}", "diff", "95% CI", "p", *(["p adj"] if adjusted else []),
               "n tasks (syn/sem)", "seeds", "note"]
    for column in columns:
        out.add_column(column, justify="right" if column != "note" else "left")
    for row in table.to_dict("records"):
        ci = "-" if math.isnan(row["low"]) else f"[{row['low']:+.2f}, {row['high']:+.2f}]"
        out.add_row(*[str(row[k]) for k in keys], _num(row[f"mean_{KIND_A}"]), _num(row[f"mean_{KIND_B}"]),
                    _num(row["diff"]), ci, _p(row["p_value"]), *([_p(row["p_adjusted"])] if adjusted else []),
                    f"{row[f'n_{KIND_A}']}/{row[f'n_{KIND_B}']}", str(row["n_seeds"]), row["note"] or "")
    return out


def _keys(table, first: list[str]) -> list[str]:
    extra = [k for k in ("base_model", "policy") if k in table.columns]
    return [*first, *extra]


def _plain_table(title: str, table, columns: list[str], formats: dict[str, str] | None = None) -> Table:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column.replace("_", " "))
    for row in table.to_dict("records"):
        out.add_row(*[_cell(row.get(c), (formats or {}).get(c)) for c in columns])
    return out


def _cell(value, fmt: str | None) -> str:
    """A table cell: "-" for a missing number, "?" for an unknown one (pandas' NA: a training size not known)."""
    import pandas as pd

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value is pd.NA:
        return "?"
    return fmt.format(value) if fmt else str(value)


def _header(report) -> None:
    c = report.counts
    console.print(f"[bold]experiment[/] {report.experiment}: {c.get('selected', 0)} cells with a result "
                  f"(of {c.get('cells', 0)}), from {c.get('runs', 0)} stage-2/retrieval runs: "
                  f"{c.get('not_selected', 0)} finished trials not selected (other learning rates), "
                  f"{c.get('running', 0)} running, {c.get('failed', 0)} failed, {c.get('killed', 0)} stopped, "
                  f"{c.get('incomplete', 0)} finished without final metrics", soft_wrap=True)
    if report.searches:
        of = f"of {len(report.search_ids)} in the experiment"
        word, what = "search", f"{report.searches[0]} ({of}; the latest is {report.search_ids[-1]})"
        if len(report.searches) > 1:
            word, what = "searches", f"{', '.join(report.searches)} pooled ({len(report.searches)} {of})"
        elif report.searches[0] == report.search_ids[-1]:
            what = f"{report.searches[0]} (the latest {of})"
        console.print(f"[bold]{word}[/] {what}", soft_wrap=True)
    console.print(f"[bold]languages[/] {report.languages_label}", soft_wrap=True)
    console.print("contrast: mean gain over the 'none' baseline, syntactic - semantic; unit = intermediate task, "
                  "95% Welch t-interval over tasks (seeds averaged inside each), p = Welch t-test; p adj = "
                  f"{report.adjust} over the targets of each policy", soft_wrap=True)


def _budget_table(search_id: str, budget: dict) -> Table:
    """A budgeted search's answer: per target, the round that decided it, at how many seeds, with which interval
    (at the level that look spent) and what it decided."""
    table = Table(title=f"budget rounds of search {search_id}: the sequential decisions (valid under its "
                        "optional stopping)", title_justify="left")
    for column in ("target", "decision", "round", "seeds", "diff", "interval", "level", "p"):
        table.add_column(column)
    for target, d in sorted(budget["targets"].items()):
        low, high = d.get("low"), d.get("high")
        interval = "-" if low is None or high is None else f"[{low:+.2f}, {high:+.2f}]"
        seeds = d.get("seeds")
        table.add_row(target, str(d.get("status", "?")), str(d.get("round", "?")),
                      "-" if seeds is None else f"{seeds:.0f}", _num(d.get("diff")), interval,
                      _num(d.get("level"), "{:.3g}"), _p(d.get("p_value")))
    return table


def _budget_spent(budget: dict) -> str:
    from xgrid.planning.budget import spend_text

    if not budget["fixed"]:
        return "budget spent: not recorded"
    return f"budget spent: {spend_text(budget['spent'], budget['fixed'])}"


def _degenerate_table(report) -> Table:
    return _plain_table("degenerate cells: left out of every contrast", report.degenerate,
                        ["target", "intermediate", "kind", "seed", "base_model", "policy", "detail"])


def _flagged_table(flagged) -> Table:
    table = Table(title="flagged cells (own English training data, not transfer): left out of the contrasts",
                  title_justify="left")
    for column in ("target", "intermediate", "kind", "base_model", "policy", "seeds", "mean gain"):
        table.add_column(column)
    grouped = flagged.groupby(["target", "intermediate", "kind", "base_model", "policy"], sort=True)
    for key, sub in grouped:
        table.add_row(*[str(k) for k in key], ",".join(str(s) for s in sorted(sub["seed"])),
                      _num(sub["mean_gain"].mean()))
    return table


def print_report(report) -> None:
    _header(report)
    by_target = report.contrast_by_target
    console.print(_contrast_table("by target", by_target, _keys(by_target, ["target", "metric"]), adjusted=True))
    by_group = report.contrast_by_group
    console.print(_contrast_table("by target group (descriptive)", by_group,
                                  _keys(by_group, ["target_group", "targets"])))
    tasks = report.tasks
    if not tasks.empty:
        keys = [c for c in ("policy", "base_model") if c in tasks.columns]
        console.print(_plain_table("by task", tasks, ["target", "intermediate", "kind", "format", "train_size",
                                                      "mean_gain", "n_seeds", "degenerate_seeds", *keys],
                                   {"mean_gain": "{:+.2f}"}))
    if not report.degenerate.empty:
        console.print(_degenerate_table(report))
    if not report.flagged.empty:
        console.print(_flagged_table(report.flagged))
    for search_id, budget in report.budget.items():
        console.print(_budget_table(search_id, budget))
        console.print(f"budget method: {budget['method']}", soft_wrap=True, highlight=False, markup=False)
        console.print(_budget_spent(budget), soft_wrap=True, highlight=False, markup=False)
        decided = "; ".join(f"{t}: {d.get('status', '?')} (round {d.get('round', '?')})"
                            for t, d in sorted(budget["targets"].items()))
        console.print(f"[bold]answer[/] budgeted search {search_id} (sequential, alpha spent over its rounds): "
                      f"{decided}", soft_wrap=True, highlight=False)
    for line in report.headline:
        console.print(f"[bold]answer[/] {line}", soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
