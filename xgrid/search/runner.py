"""`run_search`: a finished plan, run on Ray. Stage 1 trains each unique intermediate checkpoint once; stage 2
runs one Tuner per target. Results, the resolved space, the plan, its provenance (code, libraries, model and
data revisions) and the Optuna studies land in the search folder; everything else (live progress, tracking) hears the search through the listeners of the options."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import yaml

from xgrid import provenance
from xgrid.events import Listeners, SearchListener, TrialRecord
from xgrid.planning.plan import Plan
from xgrid.running.store import CheckpointStore, is_uri
from xgrid.search.interrupt import SearchInterrupted, stop_on_signals
from xgrid.search.options import SearchOptions
from xgrid.search.results import ResultsFile
from xgrid.search.resume import (FAILED, FINISHED, INTERRUPTED, RUNNING, SearchBusy, check_not_running,
                                 finished_records, hold_search, update_state)
from xgrid.search.rounds import RoundsState, run_rounds
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
    rounds: RoundsState | None = None  # a budgeted search: its rounds, decisions and what they spent


class _Stage1Count(SearchListener):
    def __init__(self):
        self.trained = self.reused = 0

    def stage1_finished(self, job, trained, result):
        if job.trains:
            self.trained += trained
            self.reused += not trained


def new_search_dir(options: SearchOptions, plan: Plan) -> Path:
    """A new folder named after its start time (`xgrid status` reads the time back from the name). Two searches
    started in the same microsecond (same output dir) do not share one: `mkdir` is atomic, so the one that
    finds the name taken moves on to the next free microsecond, and the name stays a timestamp."""
    from datetime import timedelta

    parent = (options.output_root / plan.space.name).absolute()
    parent.mkdir(parents=True, exist_ok=True)
    moment = datetime.now()
    while True:
        path = parent / moment.strftime("%Y%m%d-%H%M%S-%f")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            moment += timedelta(microseconds=1)


def check_address(options: SearchOptions) -> None:
    if options.address and options.address.startswith("ray://"):
        # Ray Client runs Tuner.fit() in an actor on the head node: the driver-side listeners (progress, MLflow,
        # results) would never hear a trial, and the Optuna storage path would be the client's.
        raise SearchSetupError(
            f"--address {options.address}: Ray Client (ray://) cannot drive a search from outside the cluster; "
            "run the driver on the cluster instead: `ray job submit --address http://HEAD:8265 -- xgrid search ...` "
            "or, on a cluster node, `xgrid search ... --address auto` (see docker/README.md)")


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A `HOST:PORT` address where nothing answers is refused at once: `ray.init` would retry for minutes while
    printing its C++ client's warnings. (`auto` finds a cluster on this node or fails fast by itself.)"""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SearchSetupError(f"--address {address}: expected auto or HOST:PORT of a Ray head (e.g. "
                               "10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise SearchSetupError(f"--address {address}: no Ray head answers there ({err.strerror or err}); start "
                               "one with `ray start --head` or give the address `ray status` prints on a node "
                               "of the cluster") from None


def start_ray(options: SearchOptions) -> tuple[bool, str | None]:
    """Start local Ray (dashboard on 127.0.0.1 only) or join `options.address`. Returns (started, dashboard).
    A failure is one SearchSetupError line, with whatever Ray had started shut down again."""
    import ray

    if ray.is_initialized():
        return False, None
    check_reachable(options.address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}

    def start():
        if options.address:
            return ray.init(address=options.address, **kwargs)
        with loopback_only():
            return ray.init(include_dashboard=True, dashboard_host="127.0.0.1", **kwargs | options.ray_init)

    try:
        try:
            context = start()
        except Exception as err:
            # Ray's own fixed start-up waits (its raylet's ~30 s, its agents' ~16 s) run out on a machine busy
            # with other work; a second start usually finds it quieter. Anything else fails at once.
            if options.address or "timed out during startup" not in str(err):
                raise
            ray.shutdown()
            context = start()
    except Exception as err:  # a start-up timeout, a port in use, no cluster at `auto` ...
        ray.shutdown()
        where = f"at {options.address}" if options.address else "locally"
        raise SearchSetupError(f"Ray did not start {where}: {_first_line(err)} (Ray's logs, if it got that far: "
                               f"{_ray_log_folder()})") from None
    url = getattr(context, "dashboard_url", None)
    return True, (f"http://{url}" if url and not url.startswith("http") else url)


@contextmanager
def loopback_only() -> Iterator[None]:
    """A local Ray whose every server (GCS, raylet, workers, agents) listens on 127.0.0.1 only.

    On Linux Ray binds its gRPC servers to all interfaces and takes the primary interface's address as the node's,
    even when asked for 127.0.0.1: a one-machine search would expose an unauthenticated cluster to the network.
    Ray's own single-machine mode (what it does on macOS and Windows, switched by its documented
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) takes the loopback address instead; Ray reads that switch into a
    constant when it is imported, so the constant is set for the start-up and put back after. A cluster that
    xgrid joins (`--address`) is left as its operator started it."""
    try:
        from ray._private import ray_constants
    except ImportError:  # a private module: if it moves, start Ray as it comes rather than not at all
        yield
        return
    previous = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _ray_log_folder() -> str:
    import tempfile

    return f"{os.environ.get('RAY_TMPDIR') or tempfile.gettempdir()}/ray/session_latest/logs"


def dashboard_login_hint() -> str | None:
    """How to get into the dashboard when Ray's token authentication is on (Ray 2.60 turns it on for a new local
    cluster): the page asks for the token, and `ray get-auth-token` prints it. None when it is off."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        enabled = is_token_auth_enabled()
    except Exception:  # a private API: if it moves, say nothing rather than something wrong
        return None
    return ("token authentication is on: when the page asks for a token, paste what `ray get-auth-token` prints"
            if enabled else None)


@contextmanager
def ray_session(options: SearchOptions) -> Iterator[str | None]:
    """Ray for the length of a block: started (or joined) here and shut down after, unless it already ran.
    Yields the dashboard URL (None when joining a cluster)."""
    import ray

    from xgrid.search.ray_env import credentials_off_runtime_envs

    started, dashboard = start_ray(options)
    try:
        with credentials_off_runtime_envs():  # the workers take them from their node's environment
            yield dashboard
    finally:
        if started:
            ray.shutdown()


def write_search_files(search_dir: Path, plan: Plan) -> None:
    """The resolved space and the plan, before anything runs: what a reader of the folder needs to know."""
    (search_dir / "space.yaml").write_text(yaml.safe_dump(plan.space.model_dump(mode="json"), sort_keys=False))
    (search_dir / "plan.json").write_text(json.dumps(plan.describe(), indent=1, default=str))


def run_search(plan: Plan, options: SearchOptions = SearchOptions(), on_ready=None,
               resume: Path | None = None) -> SearchOutcome:
    """Run `plan` in a new search folder, or continue the one of an interrupted search (`resume`: its folder,
    whose space.yaml the plan was built from): what it finished is kept, the rest runs."""
    started_at = time.perf_counter()
    check_address(options)  # before anything is written: a refused search leaves no folder behind
    if resume is not None:
        _check_free(resume)  # before Ray: a search another driver still runs is refused at once
    try:
        with ray_session(options) as dashboard:  # also before the folder: a Ray that does not start leaves nothing
            if options.address:
                _check_cluster_fits(plan)  # a local Ray was checked against this machine before it started
                _check_shared_folders(plan, options, resume)
            return _search(plan, options, on_ready, dashboard, started_at, resume)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; Ray is down now, so nothing writes into the store any more
        CheckpointStore(options.store).discard_staging([job.key for job in plan.trained_jobs])
        raise


def _check_cluster_fits(plan: Plan) -> None:
    """A trial the joined cluster can never place would wait in Tune's queue for ever, without a word: refused
    here, before any folder, against the nodes alive now (an autoscaling cluster that adds nodes on demand is
    judged by what it has at the start)."""
    import ray

    from xgrid.running.preflight import PreflightError, check_placeable

    try:
        check_placeable(plan.space, ray.cluster_resources(), [n["Resources"] for n in ray.nodes() if n.get("Alive")])
    except PreflightError as err:
        raise SearchSetupError(str(err)) from None


def _check_shared_folders(plan: Plan, options: SearchOptions, resume: Path | None) -> None:
    """Nodes that share no file system cannot share a local store root, nor Ray's trial storage in the search
    folder (`shared_paths`): refused here, before the search folder exists."""
    from xgrid.search.shared_paths import UnsharedFolder, check_shared

    folders = {"--store-root": options.store}
    if not is_uri(options.store):  # else Ray's trial storage lives under the store root too
        folders["--output-dir"] = str(resume or options.output_root / plan.space.name)
    try:
        check_shared(folders)
    except UnsharedFolder as err:
        raise SearchSetupError(str(err)) from None


def _check_free(search_dir: Path) -> None:
    try:
        check_not_running(search_dir)
    except SearchBusy as err:
        raise SearchSetupError(str(err)) from None


def _search(plan: Plan, options: SearchOptions, on_ready, dashboard: str | None, started_at: float,
            resume: Path | None) -> SearchOutcome:
    """The search in its folder (new, or the resumed one), on the Ray that `run_search` holds; the folder's lock
    is held throughout, so a second driver (a resume started twice) is refused."""
    search_dir = Path(resume).absolute() if resume is not None else new_search_dir(options, plan)
    try:
        with hold_search(search_dir):
            return _search_locked(plan, options, on_ready, dashboard, started_at, search_dir, resume is not None)
    except SearchBusy as err:
        raise SearchSetupError(str(err)) from None


def _search_locked(plan: Plan, options: SearchOptions, on_ready, dashboard: str | None, started_at: float,
                   search_dir: Path, resumed: bool) -> SearchOutcome:
    if not resumed:
        write_search_files(search_dir, plan)
    if not resumed or provenance.read(search_dir) is None:
        # Before any event: the tracker keeps it with the parent run. A resume keeps the record of the start (a
        # folder from before provenance existed gets one now).
        provenance.write(search_dir, plan)
    storage_path = (f"{options.store.rstrip('/')}/ray/{search_dir.name}" if is_uri(options.store)
                    else str(search_dir / "ray"))
    # What an earlier driver of this folder finished: not rerun, and kept in the results with the new trials.
    done = finished_records(search_dir, plan) if resumed else {}
    counter = _Stage1Count()
    results = ResultsFile(search_dir, plan.space, done)  # before the tracker: a finished trial is on disk first
    events = Listeners(counter, results, *options.listeners)
    update_state(search_dir, status=RUNNING, pid=os.getpid())
    if on_ready is not None:
        on_ready(search_dir, dashboard)
    status = "FAILED"
    stop = None
    rounds = None
    try:
        with stop_on_signals() as stop:
            events.search_started(plan, str(search_dir))
            for record in (r for rs in done.values() for r in rs):
                events.trial_restored(record)
            def run_plan(part: Plan, round_no: int = 1) -> None:
                encoders = run_stage1(part, options.store, storage_path, events)
                for target in part.space.targets:
                    cells = {c.id for c in part.cells_for(target)}
                    if not cells:  # a budgeted round that left this target out
                        continue
                    earlier = [r for r in done.get(target, []) if r.cell.id in cells]
                    try:
                        results.add(search_target(target, part, encoders, search_dir, storage_path, events, stop,
                                                  done=earlier, round_no=round_no))
                    except SearchInterrupted as err:
                        results.add(getattr(err, "records", []))
                        raise

            if plan.space.budget is None:
                run_plan(plan)
            else:
                rounds = run_rounds(plan, search_dir, events, run_plan, lambda: list(results.records.values()),
                                    gpu_hours=_gpu_hours)
            status = "FINISHED"
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM, in either stage
        status = "KILLED"
        # Ray's wait re-raises a signal handler's exception as a plain KeyboardInterrupt: say which signal it was.
        if stop is not None and stop.signal_name and not isinstance(err, SearchInterrupted):
            raise SearchInterrupted(stop.signal_name) from None
        raise
    finally:
        best = results.write()  # also on failure: never lose finished trials
        closed = False
        try:
            events.search_finished(status)
            closed = True
        finally:  # finished only once the tracker closed the parent run too: else a resume closes it
            update_state(search_dir, status=STATE_OF[status] if closed else FAILED)
    return SearchOutcome(search_dir, plan, counter.trained, counter.reused, results.by_target(), best,
                         time.perf_counter() - started_at, dashboard, rounds)


def _gpu_hours(plan: Plan) -> float | None:
    """The estimated H100 GPU-hours of what a budgeted search has run and is about to (`budget.max_gpu_hours`)."""
    from xgrid.planning.cost import estimate

    return estimate(plan).gpu_hours


STATE_OF = {"FINISHED": FINISHED, "KILLED": INTERRUPTED, "FAILED": FAILED}  # parent run status -> search_state
