"""`xgrid search [SPACE]`: validate the space, print its plan (--dry-run), or run it on Ray."""

from __future__ import annotations

import shlex
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import (FormatOption, JsonOption, OutputFormat, check_output_folders, console, fail,
                              output_format, read_space, resource_choice_flag, resource_flag, resource_metavar,
                              user_errors)
from xgrid.cli.plan_view import plan_json, print_plan
from xgrid.planning.plan import Plan, build_plan
from xgrid.tasks import default_registry
from xgrid.tracking_schema import BASE_MODEL_TAG, ENGLISH_DEV, default_tracking_uri


def search(
    space: Annotated[Optional[Path], typer.Argument(help="search-space YAML file, or the name of a shipped space (microbench-default, x-stilts-reproduction, xtreme-r-syntactic-vs-semantic); default: the embedded micro-benchmark")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and print the plan and its cost; run nothing")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted search: SPACE is its search folder, or a space whose latest unfinished search under --output-dir is continued (default: the embedded micro-benchmark's); what it finished is kept, the rest runs")] = False,
    address: Annotated[Optional[str], typer.Option(help="join a running Ray cluster from one of its nodes "
                                                         "(auto, or HEAD_IP:6379); from outside the cluster, run the "
                                                         "driver on it: ray job submit --address http://HEAD:8265 -- "
                                                         "xgrid search ... --address auto; default: start local Ray",
                                                    envvar="RAY_ADDRESS")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow tracking URI (http://mlflow:5000); default: "
                                                              "sqlite:///<output-dir>/mlflow.db", envvar="MLFLOW_TRACKING_URI")] = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment name (default: the space's name)")] = None,
    output_dir: Annotated[Path, typer.Option(help="where search folders are written", envvar="XGRID_OUTPUT_DIR")] = Path("xgrid_runs"),
    store_root: Annotated[Optional[str], typer.Option(help="stage-1 checkpoint store: a folder every node sees, or "
                                                            "s3://... (default: <output-dir>/store)", envvar="XGRID_STORE_ROOT")] = None,
    max_concurrent: Annotated[Optional[int], typer.Option(parser=resource_flag("--max-concurrent", "max_concurrent_trials"), metavar=resource_metavar("max_concurrent_trials"), help="trials running at once (overrides the space)")] = None,
    workers_per_trial: Annotated[Optional[int], typer.Option(parser=resource_flag("--workers-per-trial", "workers_per_trial"), metavar=resource_metavar("workers_per_trial"), help="Ray Train workers per trial (DDP/FSDP)")] = None,
    cpus_per_worker: Annotated[Optional[float], typer.Option(parser=resource_flag("--cpus-per-worker", "cpus_per_worker"), metavar=resource_metavar("cpus_per_worker"), help="CPUs per worker")] = None,
    gpus_per_worker: Annotated[Optional[float], typer.Option(parser=resource_flag("--gpus-per-worker", "gpus_per_worker"), metavar=resource_metavar("gpus_per_worker"), help="GPUs per worker")] = None,
    trial_backend: Annotated[Optional[str], typer.Option(parser=resource_choice_flag("--trial-backend", "trial_backend"), metavar=resource_metavar("trial_backend"), help="auto | ray_train | inline (see README: trial overhead)")] = None,
    fmt: FormatOption = None,  # json: with --dry-run only
    as_json: JsonOption = False,
) -> None:
    """Run a transfer grid: stage 1 trains each intermediate checkpoint once, stage 2 searches each target.

    Exit status: 0 every trial and evaluation ran; 1 a stage-1 checkpoint or the tracking store failed; 2 bad input
    or a refused set-up (nothing ran); 3 the search finished but trials failed (the last line counts them; every
    trial is in results.json); 130 or 143 stopped by SIGINT or SIGTERM (continue it with --resume).
    """
    from xgrid.search.options import SearchOptions

    as_json = output_format(fmt, as_json) is OutputFormat.json
    if as_json and not dry_run:  # a running search prints live progress; its results are in results.json
        raise fail("--format json needs --dry-run: a running search prints live progress, not JSON "
                   "(its results go to the search folder's results.json)")
    registry = default_registry()
    resume_dir = None
    if resume:  # the folder's space.yaml is the truth: SPACE names the folder, or a space that must match it
        from xgrid.cli.resume_cmd import resumed_space

        resume_dir, config = resumed_space(space, output_dir, registry)
    else:
        config = read_space(space, registry)
    check_output_folders(output_dir, store_root, dry_run)  # a file in the way, a folder this run cannot write
    with user_errors():
        config = config.with_resources({"max_concurrent_trials": max_concurrent,
                                        "workers_per_trial": workers_per_trial, "cpus_per_worker": cpus_per_worker,
                                        "gpus_per_worker": gpus_per_worker, "trial_backend": trial_backend})
    plan = build_plan(config, registry)
    from xgrid.running.preflight import PreflightError, preflight

    try:  # before Ray and before any folder: models, data, layers, resources (a dry run warns of what is not here)
        preflight(plan, dry_run=dry_run, address=address)
    except PreflightError as err:
        raise fail(str(err)) from None
    options = SearchOptions(output_root=output_dir, store_root=store_root, address=address)
    if address:  # refused by the dry run too, not only by the real run (run_and_report relies on this)
        from xgrid.search.runner import SearchSetupError, check_address

        try:
            check_address(options)
        except SearchSetupError as err:
            raise fail(str(err)) from None
    if as_json:
        console.print_json(data=plan_json(plan, options.store))
        return
    print_plan(plan, options.store)
    if dry_run:
        return
    run_and_report(plan, options, tracking_uri or default_tracking_uri(output_dir), experiment or config.name,
                   resume=resume_dir)


def run_and_report(plan: Plan, options, tracking_uri: str, experiment: str, resume: Path | None = None) -> None:
    """Checks first (the address, the tracking URI), then Ray, then the tracker, then the search folder: a refused
    address or tracking URI, or a Ray that does not start, leaves no folder and no MLflow experiment behind.
    Library log lines go to the folder's search.log. `resume`: the folder of an interrupted search to continue
    (one that finished is said so, and only its tracking is completed)."""
    from xgrid.cli.resume_cmd import check_same_tracking, remember_tracking, resume_command
    from xgrid.search.resume import FINISHED, read_state
    from dataclasses import replace

    from xgrid.search.interrupt import SearchInterrupted
    from xgrid.search.library_logs import LOG_NAME, library_logs
    from xgrid.search.progress import Progress
    from xgrid.search.runner import SearchSetupError, dashboard_login_hint, ray_session, run_search
    from xgrid.search.stage1 import Stage1Error
    from xgrid.search.stage2 import selection_metric
    from xgrid.tracking import TrackingError, check_uri, open_writer
    from xgrid.tracking.listener import TrackingListener

    try:
        check_uri(tracking_uri)  # the address was checked by `search`, for the dry run too
    except TrackingError as err:  # before Ray, a folder or an experiment: nothing is left behind
        raise fail(f"--tracking-uri {tracking_uri}: {err}") from None
    if resume is not None:
        check_same_tracking(resume, tracking_uri, experiment)
        if read_state(resume).get("status") == FINISHED:
            _complete_tracking(resume, tracking_uri, experiment)
            say(f"search {resume} already finished: nothing to resume (results: {resume}/results.csv, every "
                "trial in results.json)")
            return
    folder: list[Path] = []  # the search folder, once made (for the interrupt's message)
    try:
        with library_logs() as logs, ray_session(options) as dashboard:
            def ready(search_dir, _):
                folder.append(search_dir)
                remember_tracking(search_dir, tracking_uri, experiment)
                logs.write_to(search_dir / LOG_NAME)
                # soft_wrap: a path is one line even in a narrow terminal, so it can be copied whole
                say(f"search folder: {search_dir} (library logs: {LOG_NAME}, Tune's output: tune.log)")
                hint = dashboard_login_hint() if dashboard else None
                say(f"Ray dashboard: {dashboard or 'see your cluster'}" + (f" ({hint})" if hint else ""))

            tracker = TrackingListener(open_writer(tracking_uri, experiment))
            progress = Progress(console, selection_metric(plan.space))
            outcome = run_search(plan, replace(options, listeners=(tracker, progress)), on_ready=ready,
                                 resume=resume)
    except SearchSetupError as err:
        raise fail(str(err)) from None
    except Stage1Error as err:
        raise fail(str(err), code=1) from None
    except SearchInterrupted as err:  # Ctrl-C or SIGTERM: the runner closed the runs and wrote the results
        where = f"{folder[0]}/results.json" if folder else "nothing: the search had not started"
        if not folder:
            raise fail(f"interrupted by {err.signal_name}: nothing had started", code=err.exit_code) from None
        command = resume_command(folder[0], options, tracking_uri, experiment, plan.space.name)
        raise fail(f"interrupted by {err.signal_name}: every finished trial is in {where}; the runs still open "
                   f"were closed KILLED in MLflow; continue with: {command}", code=err.exit_code) from None
    except TrackingError as err:  # the store failed during the search: results.json still has every trial
        raise fail(f"tracking at {tracking_uri} failed: {err} (the search folder's results.json keeps every "
                   "finished trial)", code=1) from None
    print_results(outcome, tracker, experiment)
    failed = failed_line(outcome)
    if failed:
        raise fail(failed, code=FAILED_TRIALS_EXIT)


FAILED_TRIALS_EXIT = 3  # the search ran to its end, but some trials or evaluations failed (see the search's --help)


def failed_line(outcome) -> str | None:
    """The last line of a search in which trials failed: how many of how many, and where they are (None if none)."""
    records = [r for rs in outcome.records.values() for r in rs]
    trials = [r for r in records if r.cell.trains]
    evaluations = [r for r in records if not r.cell.trains]
    parts = [f"{sum(r.status == 'failed' for r in rs)} of {len(rs)} {name}"
             for rs, name in ((trials, "stage-2 trials"), (evaluations, "retrieval evaluations"))
             if any(r.status == "failed" for r in rs)]
    if not parts:
        return None
    return (f"{' and '.join(parts)} failed; the search ran to its end (their errors are above, every trial is in "
            f"{outcome.search_dir}/results.json)")


def _complete_tracking(search_dir: Path, tracking_uri: str, experiment: str) -> None:
    """A finished search still gets what its driver could not log (a queued writer replays its journal)."""
    from xgrid.search.library_logs import LOG_NAME, library_logs
    from xgrid.tracking import TrackingError, open_writer

    try:
        with library_logs() as logs:  # MLflow's own lines go to the folder's log, as during the search
            logs.write_to(search_dir / LOG_NAME)
            writer = open_writer(tracking_uri, experiment)
            use_folder = getattr(writer, "use_folder", None)
            if use_folder is not None:
                use_folder(search_dir)
            close = getattr(writer, "close", None)
            if close is not None:
                close()
    except TrackingError as err:
        raise fail(f"tracking at {tracking_uri} failed: {err}", code=1) from None


def say(line: str) -> None:
    console.print(line, soft_wrap=True, highlight=False, markup=False)


def print_results(outcome, tracker, experiment: str) -> None:
    for target in outcome.plan.space.targets:
        rows = [r for r in outcome.best if r["target"] == target]
        task = outcome.plan.target_task(target)
        metric = task.metric
        table = Table(title=f"{target}: best trial per cell ({metric}, zero-shot)")
        languages = [l for l in task.languages if any(f"{metric}.{l}" in r for r in rows)]
        for column in ("base model", "intermediate", "kind", "seed", "best lr", "en dev", "avg", "avg w/o en",
                       *languages, "trials (stopped/failed)"):
            table.add_column(column)
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        for r in sorted(rows, key=lambda r: (r[BASE_MODEL_TAG], r["intermediate"], r["seed"])):
            lr = r.get("learning_rate")
            table.add_row(r[BASE_MODEL_TAG], r["intermediate"], r["intermediate_kind"], r["seed"],
                          "-" if not lr else f"{lr:.2g}", fmt(r.get(ENGLISH_DEV)), fmt(r.get("avg")),
                          fmt(r.get("avg_xling")), *[fmt(r.get(f"{metric}.{l}")) for l in languages],
                          f"{r['trials']} ({r['stopped']}/{r['failed']})")
        console.print(table)
    records = [r for rs in outcome.records.values() for r in rs]
    failed = [r for r in records if r.status == "failed"]
    for error, count in Counter(r.error or "unknown error" for r in failed).most_common(5):
        console.print(f"[red]{count} trial(s) failed:[/] {error}", highlight=False, soft_wrap=True)
    for line in summary_lines(outcome, records, tracker, experiment):
        say(line)


def summary_lines(outcome, records, tracker, experiment: str) -> list[str]:
    """The counts (the progress's and MLflow's: one run per trained checkpoint, trial and evaluation) and the
    commands that open what the search left, each runnable as printed."""
    from xgrid.search.studies import dashboard_command

    trials = [r for r in records if r.cell.trains]
    count = lambda status, rs: sum(r.status == status for r in rs)
    evaluations = len(records) - len(trials)
    folder, uri = outcome.search_dir, tracker.tracking_uri or default_tracking_uri()
    ui = ui_hint(uri)
    lines = [
        f"stage 1: {outcome.stage1_trained + outcome.stage1_reused} checkpoints ({outcome.stage1_trained} trained, "
        f"{outcome.stage1_reused} reused from the store)",
        f"stage 2: {len(trials)} trials ({count('completed', trials)} completed, {count('stopped', trials)} "
        f"stopped early, {count('failed', trials)} failed); retrieval: {evaluations} evaluations "
        f"({count('failed', records) - count('failed', trials)} failed)",
        f"MLflow: experiment {experiment!r} (id {tracker.experiment_id}) at {uri}",
        f"  UI: {ui}; the selected trial of each cell is tagged: search runs with tags.selected = \"true\"",
        f"  compare: xgrid compare {shlex.quote(experiment)} --tracking-uri {shlex.quote(uri)}",
        f"done in {outcome.seconds:.0f} s. Results: {folder}/results.csv (best per cell), results.json (every trial)",
        f"  status: xgrid status {shlex.quote(str(folder))}",
        f"  Optuna studies: {dashboard_command(folder)}",
    ]
    if getattr(outcome, "rounds", None) is not None:
        lines[2:2] = budget_lines(outcome.rounds)
    pending = getattr(tracker.writer, "pending", 0)  # writes the tracking store did not take (it stopped answering)
    if pending:
        lines.insert(3, f"  {pending} tracking writes are pending in {tracker.writer.journal}; they are logged when "
                        f"`xgrid search --resume {shlex.quote(str(folder))}` runs")
    return lines


def ui_hint(uri: str) -> str:
    """How to look at the runs of `uri`: a tracking server already serves the MLflow UI, so its URL is opened in a
    browser (without the user and password a URI may carry: the browser asks for them); a store (SQLite, a folder,
    a database) is served by `mlflow ui`."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() in ("http", "https"):
        netloc = parts.netloc.rpartition("@")[2]
        return f"open {urllib.parse.urlunsplit(parts._replace(netloc=netloc))} in a browser (the server serves the MLflow UI)"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def budget_lines(rounds) -> list[str]:
    """A budgeted search: each target's decision, the round that made it, and what the rounds spent against the
    fixed design (every target at max_seeds)."""
    lines = [f"budget: {len(rounds.rounds)} round(s), stopped: "
             + {"decided": "every target decided", "max_seeds": "max_seeds reached with targets open",
                "max_gpu_hours": "max_gpu_hours would be exceeded by the next round"}.get(rounds.stopped_by,
                                                                                      rounds.stopped_by)]
    from xgrid.planning.budget import spend_text

    for d in rounds.latest().values():
        lines.append(f"  {d.target}: {d.status} (round {d.round}, {d.seeds} seeds, {d.interval_text()} at level "
                     f"{d.level:.3g})")
    lines.append(f"  spent: {spend_text(rounds.spent, rounds.fixed)}; rounds.json in the search folder")
    return lines
