"""`search_status`: what a search (running, finished or cut off) has done and what is left, per target, read from
its folder and its tracking store - never from the driver, so it answers from another terminal or after a crash.

What was planned comes from the folder (`plan.json`: the cells with their tags; `space.yaml`: trials per cell,
concurrency, policy). What happened comes from the best source there is, per target:

  results.json  rewritten after every finished trial and when the search ends: every trial it heard;
  MLflow        the runs of this search (tag `search_id` = the folder's name), while a driver runs it (they
                also show the trials still running);
  optuna.journal  one study per trained target (`<space>.<target>`), when MLflow cannot be read (`optuna.db`
                  in a folder of an earlier xgrid, `xgrid.search.studies`). A trial stopped early is PRUNED; a
                  COMPLETE one with fewer reported epochs than planned (written before xgrid marked early
                  stops) also counts as stopped; retrieval targets have no study.

Whether it still runs: a live driver holds the folder's `search.lock` for the whole search and writes how it
ended into `search_state.json`; a folder whose state says running but whose lock nobody holds lost its driver
(SIGKILL, a node gone) and is reported interrupted, with the command that resumes it.

Time: the search starts at its folder's name (`YYYYmmdd-HHMMSS-ffffff`, the runner's stamp); the last activity is
the newest file in the folder (Tune writes under `ray/`, Optuna into `optuna.journal`) or trial time; a trial's
duration is its wall time (Optuna's datetimes, or a run's start/end when the reader returns them), else its
`time_total_s` (Tune) or `seconds` (the phase) metric. ETA of a target = trials left (and running) x median trial
duration / concurrency (`resources.max_concurrent_trials`, `xgrid.search.eta`); None ("unknown") when no trial of
it has finished yet.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from xgrid import tracking_schema as schema
from xgrid.config import SearchSpace, SpaceError, parse_space
from xgrid.search.eta import eta_seconds
from xgrid.search.studies import JOURNAL, study_file, study_storage
from xgrid.tracking import ACTIVE_STATUSES, FINISHED as RUN_FINISHED, RunRecord

FOLDER_STAMP = "%Y%m%d-%H%M%S-%f"  # xgrid.search.runner.new_search_dir
STALE_AFTER_S = 3600.0  # a RUNNING search with nothing new for this long is reported as stalled
TUNE_SECONDS = "time_total_s"  # Tune's wall time of a trial, in every result it reports
MAX_FILES = 50_000  # newest-file scan of a search folder: enough for any ray/ folder, bounded for a huge one

# Search states
RUNNING, FINISHED, FAILED, INTERRUPTED, STALLED = "running", "finished", "failed", "interrupted", "stalled"
PARENT_STATES = {"FINISHED": FINISHED, "FAILED": FAILED, "KILLED": INTERRUPTED}
# Trial states (TrialRecord.status, plus what a reader sees of trials that have not ended)
COMPLETED, STOPPED, FAILED_TRIAL, CUT_OFF, RUNNING_TRIAL = "completed", "stopped", "failed", "cut_off", "running"
# Sources of a target's trials. One counted from its study has the study file's name: OPTUNA, or optuna.db in a
# folder of an earlier xgrid (`xgrid.search.studies`).
RESULTS, MLFLOW, OPTUNA, NONE = "results.json", "mlflow", JOURNAL, "none"


class StatusError(ValueError):
    """The folder is not a search folder (or cannot be read as one): one line for the user."""


@dataclass
class Stage1Status:
    """Stage-1 checkpoints of the search. `trained`/`running`/`failed` count this search's stage-1 runs (None when
    MLflow was not read); a checkpoint found in the store is reused and leaves no run, so `reused` is known only
    once stage 1 is over (`done`)."""

    total: int  # checkpoints that train (the `none` baseline trains nothing)
    trained: int | None = None
    running: int | None = None
    failed: int | None = None
    reused: int | None = None
    done: bool | None = None

    def describe(self) -> str:
        if self.total == 0:
            return "nothing to train"
        if self.trained is None:
            return f"done ({self.total} checkpoints)" if self.done else "unknown (no MLflow runs of it read)"
        parts = [f"{self.trained}/{self.total} trained"]
        parts += [f"{n} {what}" for n, what in ((self.running, "running"), (self.failed, "failed")) if n]
        if self.done:
            parts += [f"{self.reused} reused from the store"] if self.reused else []
            return ", ".join(parts) + ", done"
        rest = self.total - self.trained - (self.running or 0) - (self.failed or 0)
        return ", ".join(parts + ([f"{rest} reused or pending"] if rest > 0 else []))


@dataclass
class Best:
    """The best completed trial of a target so far (across its cells)."""

    score: float
    metric: str  # best.<policy> for a trained target, <metric>.avg for a retrieval one
    avg: float | None = None
    avg_metric: str | None = None
    cell_id: str | None = None
    intermediate: str | None = None
    seed: str | None = None
    learning_rate: float | None = None
    trial_id: str | None = None


@dataclass
class TargetStatus:
    target: str
    format: str
    trains: bool | None  # None: the format is unknown to this installation
    cells: int
    trials_per_cell: int  # 1 for a retrieval target (one evaluation per cell)
    planned: int
    source: str = NONE  # where the counts come from: results.json / mlflow / optuna.journal (optuna.db) / none
    state: str = "unknown"  # done / running / pending / incomplete / unknown
    cells_done: int | None = None  # cells with at least one completed trial with final metrics
    completed: int | None = None
    stopped: int | None = None
    failed: int | None = None
    cut_off: int | None = None  # ended by the end of the search (interrupt, crash) before the trial did
    running: int | None = None
    left: int | None = None  # planned trials not started
    best: Best | None = None
    spent_s: float | None = None
    spent_is_sum: bool = False  # spent_s is the sum of trial durations (no start/end times were available)
    median_trial_s: float | None = None
    eta_s: float | None = None


@dataclass
class SearchStatus:
    search_dir: Path
    search_id: str
    space: str
    experiment: str
    tracking_uri: str | None
    state: str  # running / finished / failed / interrupted / stalled
    mlflow_read: bool
    concurrency: int
    stage1: Stage1Status
    targets: list[TargetStatus]
    started_at: datetime | None = None
    last_activity: datetime | None = None
    spent_s: float | None = None
    eta_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: paths and datetimes as strings."""
        def safe(value):
            if isinstance(value, dict):
                return {k: safe(v) for k, v in value.items()}
            if isinstance(value, list):
                return [safe(v) for v in value]
            if isinstance(value, datetime):
                return value.isoformat(timespec="seconds")
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        data = safe(asdict(self))
        data["stage1"]["summary"] = self.stage1.describe()
        return data


@dataclass
class _Trial:
    """One trial (or retrieval evaluation) as any source tells it."""

    target: str
    cell_id: str | None
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    learning_rate: float | None = None
    trial_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.start and self.end:
            return max(0.0, (self.end - self.start).total_seconds())
        for name in (TUNE_SECONDS, schema.SECONDS):
            value = self.metrics.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                return float(value)
        return None


@dataclass
class _Tracked:
    parent: RunRecord | None
    stage1: list[RunRecord]
    children: list[RunRecord]


# ---------------------------------------------------------------------------------------------------------------
# finding search folders
# ---------------------------------------------------------------------------------------------------------------


def is_search_dir(path: Path) -> bool:
    return (path / "plan.json").is_file()


def find_search_dirs(root: Path) -> list[Path]:
    """Search folders under `root`, oldest first: `root` itself, `root/<timestamp>` (a space's folder) or
    `root/<space>/<timestamp>` (an output folder)."""
    root = Path(root)
    if is_search_dir(root):
        return [root]
    if not root.is_dir():
        return []
    found = [p.parent for pattern in ("*/plan.json", "*/*/plan.json") for p in root.glob(pattern) if p.is_file()]

    def key(path: Path):
        try:
            return (datetime.strptime(path.name, FOLDER_STAMP).timestamp(), path.name)
        except ValueError:
            return ((path / "plan.json").stat().st_mtime, path.name)

    return sorted(set(found), key=key)


def latest_search_dir(root: Path) -> Path | None:
    found = find_search_dirs(root)
    return found[-1] if found else None


# ---------------------------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------------------------


def _read_plan(search_dir: Path) -> tuple[dict[str, Any], SearchSpace]:
    if not search_dir.is_dir():
        raise StatusError(f"{search_dir}: no such folder")
    if not is_search_dir(search_dir):
        raise StatusError(f"{search_dir} is not a search folder (no plan.json)")
    try:
        plan = json.loads((search_dir / "plan.json").read_text())
        space_path = search_dir / "space.yaml"
        if not space_path.is_file():
            raise StatusError(f"{search_dir} is not a search folder (plan.json but no space.yaml)")
        space = parse_space(yaml.safe_load(space_path.read_text()), None, str(space_path))
    except SpaceError as err:
        raise StatusError(f"{search_dir / 'space.yaml'}: {str(err).splitlines()[0]}") from None
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise StatusError(f"{search_dir}: cannot read the plan: {str(err).splitlines()[0]}") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("cells"), list):
        raise StatusError(f"{search_dir / 'plan.json'}: not a plan (no cells)")
    return plan, space


@lru_cache(maxsize=None)
def _trains(fmt: str) -> bool | None:
    """Whether a target of this format is fine-tuned (stage 2) or scored as it is (retrieval): its format says."""
    from xgrid.formats import get_format

    try:
        return get_format(fmt).trains
    except ValueError:
        return None


def _planned_targets(plan: dict[str, Any], space: SearchSpace) -> list[TargetStatus]:
    cells: dict[str, list[dict[str, str]]] = {}
    for cell in plan["cells"]:
        cells.setdefault(cell.get(schema.TARGET_TAG, "?"), []).append(cell)
    order = list(dict.fromkeys([t for t in space.targets if t in cells] + list(cells)))
    targets = []
    for name in order:
        fmt = cells[name][0].get(schema.TARGET_FORMAT_TAG, "?")
        trains = _trains(fmt)
        # Per cell: a base model may search its own learning rates (`model_overrides`), or fix one.
        per_cell = [space.trials_per_cell(name, c.get(schema.BASE_MODEL_TAG)) if trains is not False else 1
                    for c in cells[name]]
        targets.append(TargetStatus(name, fmt, trains, len(cells[name]), max(per_cell), sum(per_cell)))
    return targets


def _budgeted(plan: dict[str, Any], space: SearchSpace, search_dir: Path, notes: list[str]) -> dict[str, Any]:
    """A budgeted search plans the worst case (every target at max_seeds); a target its rounds stopped will never
    run its later seeds, so they are not counted as left (nor their stage-1 checkpoints). Says so in a note."""
    from xgrid.search.rounds import RoundsState
    from xgrid.statistics.sequential import OPEN

    if space.budget is None:
        return plan
    try:
        state = RoundsState.read(search_dir)
    except (OSError, ValueError, TypeError) as err:
        notes.append(f"rounds.json could not be read ({err}); counting every target to max_seeds")
        return plan
    if state is None:
        return plan
    seeds = space.planned_seeds()
    ran_to: dict[str, int] = {}
    for entry in state.rounds:
        for target in entry["targets"]:
            ran_to[target] = entry["seeds"]
    stopped = {t: d for (_, t), d in state.latest().items() if d.status != OPEN}
    kept = {t: {str(s) for s in seeds[:ran_to[t]]} for t in stopped if t in ran_to}
    for target, decision in sorted(stopped.items()):
        later = "; its later seeds are not run" if ran_to.get(target, len(seeds)) < len(seeds) else ""
        notes.append(f"budget: {target}: {decision.status} in round {decision.round} at {decision.seeds} "
                     f"seed(s){later}")
    cells = [c for c in plan["cells"] if c.get(schema.TARGET_TAG) not in kept
             or c.get(schema.SEED_TAG) in kept[c.get(schema.TARGET_TAG)]]
    needed = {c.get(schema.STAGE1_KEY_TAG) for c in cells}
    jobs = [j for j in plan.get("jobs", []) if j.get("key", j.get(schema.STAGE1_KEY_TAG)) in needed]
    return plan | {"cells": cells, "jobs": jobs}


def _stage1_total(plan: dict[str, Any]) -> int:
    return sum(bool(job.get("tasks")) for job in plan.get("jobs", []))


# ---------------------------------------------------------------------------------------------------------------
# the sources
# ---------------------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _numeric(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, dict):
        return {}
    return {k: v for k, v in ((k, _number(v)) for k, v in metrics.items() if not isinstance(v, bool)) if v is not None}


def _trials_from_results(search_dir: Path) -> list[_Trial] | None:
    path = search_dir / "results.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    trials = []
    for row in data.get("trials", []):
        cell = row.get("cell") or {}
        status = row.get("status") if row.get("status") in (COMPLETED, STOPPED, FAILED_TRIAL, CUT_OFF) else FAILED_TRIAL
        trials.append(_Trial(cell.get(schema.TARGET_TAG, "?"), cell.get(schema.CELL_TAG), status,
                             _numeric(row.get("metrics")), _number(row.get("learning_rate")), row.get("trial_id")))
    return trials


def _run_time(run: Any, name: str) -> datetime | None:
    """A run's start or end time (milliseconds in RunRecord); None when the reader does not know it."""
    value = _number(getattr(run, name, None))
    return datetime.fromtimestamp(value / 1000) if value else None


def _trial_from_run(run: Any) -> _Trial:
    tag = run.tags.get(schema.STATUS_TAG)
    if tag in (COMPLETED, STOPPED, FAILED_TRIAL, CUT_OFF):
        status = tag
    elif run.status in ACTIVE_STATUSES:
        status = RUNNING_TRIAL
    elif run.status == RUN_FINISHED:
        status = COMPLETED
    else:  # KILLED / FAILED without a trial status: closed by the end of the search, not by the trial
        status = CUT_OFF
    return _Trial(run.tags.get(schema.TARGET_TAG, "?"), run.tags.get(schema.CELL_TAG), status, _numeric(run.metrics),
                  _number(run.params.get(schema.LEARNING_RATE)), run.tags.get(schema.TRIAL_ID_TAG),
                  _run_time(run, "start_time"), _run_time(run, "end_time"))


def _read_mlflow(tracking_uri: str, experiment: str, search_id: str) -> _Tracked:
    from xgrid.tracking import open_reader

    reader = open_reader(tracking_uri)
    experiment_id = reader.find_experiment(experiment).experiment_id

    def runs(stage: str) -> list:
        return [r for r in reader.stage_runs(experiment_id, stage) if r.tags.get(schema.SEARCH_ID_TAG) == search_id]

    parents = runs(schema.SEARCH_STAGE)
    parent = max(parents, key=lambda r: r.run_id) if parents else None
    children = [r for stage in schema.CHILD_STAGES for r in runs(stage)]
    return _Tracked(parent, runs(schema.STAGE1), children)


def _read_optuna(search_dir: Path, space: SearchSpace) -> dict[str, list[_Trial]] | None:
    """Each trained target's trials from its study; None when there is no study file. WAITING trials (enqueued,
    not started) are left out: they are what is left."""
    if not study_file(search_dir).is_file():
        return None
    import optuna
    from optuna.trial import TrialState

    storage = study_storage(search_dir, read_only=True)
    best_name = schema.best_metric(space.selection_policy)
    found: dict[str, list[_Trial]] = {}
    try:
        names = set(optuna.get_all_study_names(storage))
        for target, run_name, models in [(t, r, m) for t in space.targets for r, m in space.stage2_runs(t)]:
            study_name = f"{space.name}.{run_name}"
            if study_name not in names:
                continue  # not started (or a retrieval target: it has no study)
            trials = found.setdefault(target, [])
            epochs = space.training_for(target, models[0]).epochs  # one horizon per run (`stage2_runs`)
            for t in storage.get_all_trials(storage.get_study_id_from_name(study_name), deepcopy=False):
                if t.state == TrialState.WAITING:
                    continue
                steps = t.intermediate_values
                if t.state == TrialState.COMPLETE:
                    status = COMPLETED if not steps or max(steps) >= epochs else STOPPED
                else:
                    status = {TrialState.RUNNING: RUNNING_TRIAL, TrialState.PRUNED: STOPPED}.get(t.state, FAILED_TRIAL)
                # The searcher reports the selection score of every epoch: its maximum is the selected epoch's.
                scores = [v for v in steps.values() if _number(v) is not None]
                metrics = {best_name: max(scores)} if status == COMPLETED and scores else {}
                trials.append(_Trial(target, t.params.get("cell"), status, metrics,
                                     _number(t.params.get("learning_rate")), f"optuna-{t.number}",
                                     t.datetime_start, t.datetime_complete))
    finally:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()
    return found


# ---------------------------------------------------------------------------------------------------------------
# putting it together
# ---------------------------------------------------------------------------------------------------------------


def _primary_avg(metrics: dict[str, float]) -> tuple[str, float] | None:
    """`<metric>.avg` under the declared policy (`f1.avg`, not `target_dev.f1.avg` nor `dev.f1.avg`)."""
    for name, value in metrics.items():
        head, _, tail = name.rpartition(".")
        if tail == schema.AVG and head and "." not in head and head not in schema.NOT_PRIMARY:
            return name, value
    return None


def _score(trial: _Trial, policy: str) -> tuple[str, float] | None:
    """How the trials of a target rank: the declared policy's selection score, else the target metric's average
    (retrieval evaluations select nothing)."""
    name = schema.best_metric(policy)
    if name in trial.metrics:
        return name, trial.metrics[name]
    return _primary_avg(trial.metrics)


def _fill_target(ts: TargetStatus, trials: list[_Trial], source: str, alive: bool, policy: str,
                 concurrency: int, cell_tags: dict[str, dict[str, str]], now: datetime,
                 clock: list[_Trial] = ()) -> None:
    """Counts, best so far, time and ETA of one target from its trials. `clock`: other records of the same
    trials whose start/end times say when the target ran (its Optuna study), used when `trials` carry none."""
    ts.source = source
    if not alive:  # nothing runs any more: a trial still open was cut off (a killed driver leaves runs RUNNING)
        for trial in trials:
            if trial.status == RUNNING_TRIAL:
                trial.status = CUT_OFF
    count = {s: sum(t.status == s for t in trials) for s in (COMPLETED, STOPPED, FAILED_TRIAL, CUT_OFF, RUNNING_TRIAL)}
    ts.completed, ts.stopped, ts.failed = count[COMPLETED], count[STOPPED], count[FAILED_TRIAL]
    ts.cut_off, ts.running = count[CUT_OFF], count[RUNNING_TRIAL]
    ts.left = max(0, ts.planned - sum(count.values()))
    scored = [(t, s) for t in trials if t.status == COMPLETED and (s := _score(t, policy)) is not None]
    ts.cells_done = len({t.cell_id for t, _ in scored})
    if scored:
        trial, (name, value) = max(scored, key=lambda pair: pair[1][1])
        tags = cell_tags.get(trial.cell_id or "", {})
        avg = _primary_avg(trial.metrics)
        ts.best = Best(value, name, avg[1] if avg else None, avg[0] if avg else None, trial.cell_id,
                       tags.get(schema.INTERMEDIATE_TAG), tags.get(schema.SEED_TAG), trial.learning_rate,
                       trial.trial_id)
    # time spent: first start to last end (or now, while trials run), else the sum of the trials' durations
    timed = [t for t in trials if t.start] or [t for t in clock if t.start]
    starts = [t.start for t in timed]
    ends = [t.end or t.start for t in timed] + ([now] if alive and ts.running else [])
    durations = [d for t in trials if t.status != RUNNING_TRIAL and (d := t.duration_s) is not None]
    if starts:
        ts.spent_s = max(0.0, (max(ends) - min(starts)).total_seconds())
    elif durations:
        ts.spent_s, ts.spent_is_sum = float(sum(durations)), True
    finished = [d for t in trials if t.status in (COMPLETED, STOPPED) and (d := t.duration_s) is not None] or [
        d for t in clock if t.status in (COMPLETED, STOPPED) and (d := t.duration_s) is not None]
    ts.median_trial_s = float(statistics.median(finished)) if finished else None
    if alive:
        ts.eta_s = eta_seconds(ts.left + ts.running, finished, concurrency)
    if ts.left == 0 and ts.running == 0:
        ts.state = "done"
    elif ts.running:
        ts.state = RUNNING
    elif not alive:
        ts.state = "incomplete"
    else:
        ts.state = "pending" if sum(count.values()) == 0 else RUNNING


def _newest_file(search_dir: Path) -> datetime | None:
    newest, seen = 0.0, 0
    for folder, _, files in os.walk(search_dir):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
            except OSError:
                continue
            seen += 1
            if seen >= MAX_FILES:
                return datetime.fromtimestamp(newest)
    return datetime.fromtimestamp(newest) if newest else None


def _started_at(search_dir: Path) -> datetime | None:
    try:
        return datetime.strptime(search_dir.name, FOLDER_STAMP)
    except ValueError:
        return datetime.fromtimestamp((search_dir / "plan.json").stat().st_mtime)


def _stage1(total: int, tracked: _Tracked | None, stage2_started: bool) -> Stage1Status:
    status = Stage1Status(total)
    if tracked is not None:
        runs = tracked.stage1
        status.trained = sum(r.status == RUN_FINISHED for r in runs)
        status.running = sum(r.status in ACTIVE_STATUSES for r in runs)
        status.failed = sum(r.status not in ACTIVE_STATUSES and r.status != RUN_FINISHED for r in runs)
        status.done = stage2_started or status.trained == total
        if status.done:
            status.reused = max(0, total - len(runs))
    else:
        status.done = True if stage2_started else None
    if total == 0:
        status.done = True
    return status


def search_status(search_dir: Path, tracking_uri: str | None, experiment: str | None = None, *,
                  now: datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> SearchStatus:
    """The status of the search in `search_dir`, from the folder and (when `tracking_uri` is given and can be
    read) MLflow's runs in `experiment` (default: the space's name). StatusError when it is not a search folder;
    an unreadable tracking store or Optuna database is a note, never an error."""
    search_dir = Path(search_dir).absolute()
    plan, space = _read_plan(search_dir)
    now = now or datetime.now()
    experiment = experiment or space.name
    policy = space.selection_policy
    concurrency = space.resources.max_concurrent_trials
    notes: list[str] = []
    plan = _budgeted(plan, space, search_dir, notes)
    targets = _planned_targets(plan, space)
    cell_tags = {c.get(schema.CELL_TAG, ""): c for c in plan["cells"]}

    results = None
    try:
        results = _trials_from_results(search_dir)
    except (OSError, ValueError) as err:
        notes.append(f"results.json could not be read ({str(err).splitlines()[0]}); counting from the runs")

    tracked: _Tracked | None = None
    if tracking_uri is None:
        notes.append("MLflow was not read (no tracking URI)")
    else:
        try:
            tracked = _read_mlflow(tracking_uri, experiment, search_dir.name)
        except Exception as err:  # TrackingError, or anything a client raises: a note, never a traceback
            line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            notes.append(f"MLflow was not read ({tracking_uri}): {line}")
        else:
            if tracked.parent is None and not tracked.children and not tracked.stage1:
                notes.append(f"MLflow ({tracking_uri}) has no runs of this search (search_id {search_dir.name}) in "
                             f"experiment {experiment!r}; pass --experiment if the search used another one")

    optuna_trials: dict[str, list[_Trial]] | None = None
    studies = study_file(search_dir).name  # optuna.journal, or optuna.db in a folder of an earlier xgrid
    try:
        optuna_trials = _read_optuna(search_dir, space)
    except Exception as err:  # a locked, partial or foreign study file: a note
        notes.append(f"{studies} could not be read: {(str(err).strip().splitlines() or [type(err).__name__])[0]}")

    has_runs = tracked is not None and (tracked.parent is not None or tracked.children or tracked.stage1)
    parent_status = tracked.parent.status if tracked is not None and tracked.parent is not None else None
    recorded, live = _driver_state(search_dir)
    if recorded is None:  # a folder from before search_state.json: results.json was written at the end only
        ended = results is not None or parent_status in PARENT_STATES
    else:  # results.json is rewritten after every trial: only the driver's lock says whether it still runs
        ended = not live
    alive = not ended

    by_source: dict[str, list[_Trial]] | None = None
    source = NONE
    # While the driver runs, MLflow also sees the trials still running; results.json only the finished ones.
    if results is not None and not (alive and has_runs):
        by_source, source = {}, RESULTS
        for trial in results:
            by_source.setdefault(trial.target, []).append(trial)
    elif has_runs:
        by_source, source = {}, MLFLOW
        for run in tracked.children:
            trial = _trial_from_run(run)
            by_source.setdefault(trial.target, []).append(trial)
    for ts in targets:
        studied = (optuna_trials or {}).get(ts.target, [])
        if by_source is not None:
            # The study's datetimes give the target's wall clock when the trials themselves carry no times
            _fill_target(ts, by_source.get(ts.target, []), source, alive, policy, concurrency, cell_tags, now,
                         clock=studied)
        elif ts.trains is not False and optuna_trials is not None:
            # No study yet: the target has not started (stage 2 runs the targets in order)
            _fill_target(ts, studied, studies, alive, policy, concurrency, cell_tags, now)
    if source == NONE and any(ts.source == studies for ts in targets):
        source = studies
        notes.append(f"counts from {studies}: a trial with fewer reported epochs than planned counts as stopped; "
                     "retrieval targets are not in it (unknown until MLflow or results.json can be read)")
    elif source == NONE:
        notes.append(f"no trial information: no results.json, no MLflow runs of this search and no {studies}")

    stage2_started = (results is not None or bool(optuna_trials)
                      or (tracked is not None and bool(tracked.children)))
    stage1 = _stage1(_stage1_total(plan), tracked if has_runs else None, stage2_started)

    started = _started_at(search_dir)
    times = [t for trials in (optuna_trials or {}).values() for tr in trials for t in (tr.start, tr.end) if t]
    times += [t for ts_trials in (by_source or {}).values() for tr in ts_trials for t in (tr.start, tr.end) if t]
    newest = _newest_file(search_dir)
    last = max([t for t in (newest, *times) if t] or [started])

    if recorded is None:
        state = _search_state(parent_status, results is not None, targets, now - last, stale_after_s, notes)
    elif live:
        state = _search_state(None, False, targets, now - last, stale_after_s, notes)
    elif recorded == RUNNING:  # no driver holds the folder, yet it never wrote how it ended: it was killed
        state = INTERRUPTED
        notes.append(f"the driver that ran this search is gone (killed before it could close it); continue with "
                     f"`xgrid search --resume {search_dir}`")
    else:
        state = recorded
    if any(ts.spent_is_sum for ts in targets):
        notes.append("Σ: time spent is the sum of trial durations (the runs carry no start and end times)")

    spent = max(0.0, ((now if state == RUNNING else last) - started).total_seconds()) if started else None
    eta = None
    if state == RUNNING and stage1.done and all(ts.eta_s is not None for ts in targets):
        eta = float(sum(ts.eta_s for ts in targets))
    return SearchStatus(search_dir, search_dir.name, space.name, experiment, tracking_uri, state,
                        tracked is not None, concurrency, stage1, targets, started, last, spent, eta, notes)


def _driver_state(search_dir: Path) -> tuple[str | None, bool]:
    """(the status the driver last wrote in search_state.json, None for an older folder; whether a live driver
    holds the folder's lock now)."""
    from xgrid.folder_state import read_state
    from xgrid.search.resume import SearchBusy, check_not_running

    recorded = read_state(search_dir).get("status")
    if recorded is None:
        return None, False
    try:
        check_not_running(search_dir)
    except SearchBusy:
        return recorded, True
    except OSError:  # a folder status may read but not lock (read-only): trust what the driver wrote
        return recorded, recorded == RUNNING
    return recorded, False


def _search_state(parent_status: str | None, has_results: bool, targets: list[TargetStatus], quiet: timedelta,
                  stale_after_s: float, notes: list[str]) -> str:
    """The parent run's end status when it has one; else results.json means the search ended (finished when
    nothing is left: the runner writes it also when a search fails or is interrupted); else running, or stalled
    when nothing new has happened for `stale_after_s`."""
    if parent_status in PARENT_STATES:
        return PARENT_STATES[parent_status]
    if has_results:
        return FINISHED if all(ts.left == 0 for ts in targets if ts.left is not None) else INTERRUPTED
    if quiet.total_seconds() <= stale_after_s:
        return RUNNING
    what = "its parent run is still RUNNING" if parent_status else "there is no results.json"
    notes.append(f"nothing new for {_minutes(quiet)} and {what}: the driver may have died (a killed driver leaves "
                 "its runs RUNNING), or a long stage-1 job or trial is computing; check the driver process "
                 "(or `ray status`)")
    return STALLED


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
