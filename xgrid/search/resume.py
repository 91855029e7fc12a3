"""What a search folder keeps so that `xgrid search --resume` can continue it, and the bookkeeping of a resume.

- `search_state.json`: the search's status (running, finished, interrupted, failed), and what the tracker opened
  (the parent run, the runs still open, the run of every trial), rewritten atomically on every change, so a
  driver killed at any moment leaves a readable file naming the runs it left open.
- `search.lock`: held (fcntl.flock) by the driver for the whole search; the kernel lets go of it when that
  process dies, however it dies, so a lock that can be taken means no driver is alive.
- results.json: every finished trial (rewritten after each, `xgrid.search.results.ResultsFile`) is the journal
  of what is done: a resume reruns nothing it lists as completed, stopped or failed.
- optuna.journal: the studies (`optuna.db` in a folder of an earlier xgrid, `xgrid.search.studies`). `plan_queue`
  decides, per cell, what the resumed Tuner runs: the trials the dead driver left unfinished again (same cell,
  same learning rate), then what was never asked, until the cell has `trials_per_cell` finished trials.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from contextlib import contextmanager

from xgrid.events import TrialRecord
from xgrid.folder_state import STATE_FILE, atomic_write, read_state, update_state  # noqa: F401 (re-exported)
from xgrid.planning.plan import Plan
from xgrid.tracking_schema import CELL_TAG

LOCK_FILE = "search.lock"
RESULTS_FILE = "results.json"
# search_state.json "status"
RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
# A trial with one of these statuses in results.json is done; a cut-off one (interrupted mid-run) runs again.
DONE_STATUSES = ("completed", "stopped", "failed")



class SearchBusy(RuntimeError):
    """Another live driver holds the search folder (one line for the user)."""


@contextmanager
def hold_search(search_dir: Path) -> Iterator[None]:
    """The folder's lock for the length of a block; SearchBusy when a live driver holds it."""
    path = Path(search_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise SearchBusy(_busy_message(search_dir, os.pread(fd, 64, 0))) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor lets go of the lock


def check_not_running(search_dir: Path) -> None:
    """SearchBusy when a live driver holds the folder; takes and drops the lock otherwise."""
    with hold_search(search_dir):
        pass


def _busy_message(search_dir: Path, content: bytes) -> str:
    pid = content.decode(errors="replace").strip()
    who = f"driver pid {pid}" if pid.isdigit() else "another driver"
    return (f"{search_dir}: this search is still running ({who} holds {LOCK_FILE}); stop it first (Ctrl-C), "
            "or follow it with `xgrid status`")


# --- search folders --------------------------------------------------------------------------------------------
def is_search_folder(path: Path) -> bool:
    return (path / "plan.json").is_file() and (path / "space.yaml").is_file()


def unfinished_searches(output_root: Path, space_name: str) -> list[Path]:
    """The search folders of `space_name` under `output_root` whose search did not finish, oldest first."""
    root = Path(output_root) / space_name
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and is_search_folder(p)
               and read_state(p).get("status") != FINISHED]
    return sorted(folders, key=lambda p: ((p / "plan.json").stat().st_mtime, p.name))


# --- finished trials -------------------------------------------------------------------------------------------
def finished_records(search_dir: Path, plan: Plan) -> dict[str, list[TrialRecord]]:
    """Target -> the trials results.json lists as done (completed, stopped early, failed), rebuilt as records of
    this plan's cells. Cut-off trials are left out: they run again. A trial whose cell is not in the plan is
    left out too (the plan is the folder's own, so that only happens to a hand-edited file)."""
    try:
        trials = json.loads((Path(search_dir) / RESULTS_FILE).read_text()).get("trials", [])
    except (OSError, ValueError, AttributeError):
        return {}
    cells = {cell.id: cell for cell in plan.cells}
    records: dict[str, list[TrialRecord]] = {}
    seen: set[str] = set()
    for trial in trials if isinstance(trials, list) else []:
        cell = cells.get((trial.get("cell") or {}).get(CELL_TAG))
        if cell is None or trial.get("status") not in DONE_STATUSES or trial.get("trial_id") in seen:
            continue
        seen.add(trial["trial_id"])
        rate = trial.get("learning_rate")
        record = TrialRecord(trial["trial_id"], cell, None if rate is None else float(rate), trial["status"],
                             dict(trial.get("metrics") or {}), error=trial.get("error"))
        record.history = [record.metrics]
        records.setdefault(cell.target, []).append(record)
    return records


# --- the Optuna queue of a resumed target ----------------------------------------------------------------------
@dataclass(frozen=True)
class StudyTrial:
    """What the bookkeeping needs of an Optuna trial."""

    number: int
    state: str  # WAITING, RUNNING, COMPLETE, PRUNED, FAIL
    params: dict[str, Any]  # the asked values, or an enqueued trial's fixed ones
    trial_id: str | None = None  # Tune's trial id (CellOptunaSearch sets it when the trial is asked)


@dataclass
class QueuePlan:
    fail: list[int] = field(default_factory=list)  # trial numbers to mark FAIL (dead RUNNING ones, surplus WAITING)
    requeued: list[int] = field(default_factory=list)  # trial numbers whose parameters are enqueued again
    again: list[StudyTrial] = field(default_factory=list)  # those trials (their Tune trial id finds a checkpoint)
    enqueue: list[dict[str, Any]] = field(default_factory=list)  # new waiting trials, in order
    runs: int = 0  # the Tuner's num_samples: every waiting trial, kept or new

    @property
    def nothing_to_run(self) -> bool:
        return self.runs == 0


def _matches(point: dict[str, Any], params: dict[str, Any]) -> bool:
    return all(params.get(key) == value for key, value in point.items())


def plan_queue(points: list[dict[str, Any]], trials: Iterable[StudyTrial], finished: Iterable[TrialRecord],
               trials_per_cell: int, requeued_before: Iterable[int] = ()) -> QueuePlan:
    """Which trials the Tuner of one target runs, so that every cell ends with exactly `trials_per_cell` done
    trials. `points` are the planned waiting trials (`stage2.enqueued_points`), `trials` the study as it is,
    `finished` the target's done trials (results.json), `requeued_before` the trials an earlier resume already
    enqueued again (not to be enqueued twice).

    A fresh study runs the planned points. Otherwise, per cell: waiting trials stay (Optuna's ask() pops them in
    order); a trial that was asked and did not finish (RUNNING in the study, or ended there while results.json
    does not have it, as a cut-off trial) is enqueued again with its cell and learning rate; then the planned
    points no trial has taken yet; a cell still short (a hand-edited study) gets points with only its cell fixed.
    RUNNING trials are marked FAIL (nobody is running them), surplus waiting ones too."""
    trials = sorted(trials, key=lambda t: t.number)
    if not trials:
        return QueuePlan(enqueue=list(points), runs=len(points))
    finished = list(finished)
    done_ids = {record.trial_id for record in finished}
    done = Counter(record.cell.id for record in finished)
    skip = set(requeued_before)
    cells = list(dict.fromkeys(point["cell"] for point in points))
    plan = QueuePlan(fail=[t.number for t in trials if t.state == "RUNNING"])
    for cell in cells:
        remaining = max(0, trials_per_cell - done[cell])
        own = [t for t in trials if t.params.get("cell") == cell]
        waiting = [t.number for t in own if t.state == "WAITING"]
        dead = [t for t in own if t.state != "WAITING" and t.number not in skip and t.trial_id not in done_ids
                and (t.state == "RUNNING" or t.trial_id is not None)]
        keep = waiting[:remaining]
        plan.fail += waiting[remaining:]
        need = remaining - len(keep)
        again = dead[:need]
        plan.requeued += [t.number for t in again]
        plan.again += again
        plan.enqueue += [{k: t.params[k] for k in ("cell", "learning_rate") if k in t.params} for t in again]
        need -= len(again)
        fresh = [p for p in points if p["cell"] == cell and not any(_matches(p, t.params) for t in own)]
        plan.enqueue += fresh[:need]
        need -= len(fresh[:need])
        plan.enqueue += [{"cell": cell}] * need
        plan.runs += remaining
    plan.fail = sorted(set(plan.fail))
    return plan


def earlier_checkpoints(plan: QueuePlan, trial_folders, latest_checkpoint) -> dict[tuple[str, float], str]:
    """(cell id, learning rate) -> the last checkpoint an earlier attempt of a re-enqueued trial left, for the
    trials that left one. `trial_folders(cell_id, trial_id)` lists where a trial's checkpoints can be (Tune's
    trial folder, a TorchTrainer's run folder); `latest_checkpoint(folder)` finds the newest in one (or None)."""
    found: dict[tuple[str, float], str] = {}
    for trial in plan.again:
        cell, rate = trial.params.get("cell"), trial.params.get("learning_rate")
        if trial.trial_id is None or cell is None or rate is None:
            continue
        for folder in trial_folders(cell, trial.trial_id):
            checkpoint = latest_checkpoint(folder) if Path(folder).is_dir() else None
            if checkpoint is not None:
                found[(cell, float(rate))] = str(checkpoint)
                break
    return found


def study_trials(study) -> list[StudyTrial]:
    """An Optuna study's trials as `plan_queue` reads them (an enqueued trial's values are its fixed params)."""
    from xgrid.tracking_schema import TRIAL_ID_TAG

    return [StudyTrial(t.number, t.state.name, dict(t.params) or dict(t.system_attrs.get("fixed_params") or {}),
                       t.user_attrs.get(TRIAL_ID_TAG)) for t in study.get_trials(deepcopy=False)]


def apply_queue(study, plan: QueuePlan) -> None:
    """Mark the plan's FAIL trials failed and enqueue its new waiting trials on the study."""
    from optuna.trial import TrialState

    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in plan.fail:
        trial = by_number[number]
        if not trial.state.is_finished():
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    for point in plan.enqueue:
        study.enqueue_trial(point, skip_if_exists=False)


def resume_queue(study, study_name: str, points: list[dict[str, Any]], finished: list[TrialRecord],
                 trials_per_cell: int, search_dir: Path) -> QueuePlan:
    """Plan and apply the queue of one target's study, remembering in search_state.json which trials were
    enqueued again (so a second resume does not enqueue them once more)."""
    requeued = read_state(search_dir).get("optuna_requeued", {})
    plan = plan_queue(points, study_trials(study), finished, trials_per_cell, requeued.get(study_name, ()))
    apply_queue(study, plan)
    if plan.requeued:
        update_state(search_dir, optuna_requeued=requeued | {
            study_name: sorted({*requeued.get(study_name, ()), *plan.requeued})})
    return plan
