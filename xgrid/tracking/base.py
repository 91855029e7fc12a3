"""What xgrid needs from a tracking backend, and nothing more: the search writes through a `RunWriter`,
`xgrid compare` reads through a `RunReader`, so neither knows which backend stores the runs.

The interfaces speak plain Python (strings, floats, dicts, `RunRecord`); a backend turns its own exceptions
into `TrackingError`, so callers catch one type whatever the store is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

# Run statuses, as every backend reports them. A run that is still going is RUNNING (or SCHEDULED, not yet
# started); the three others are how a run ends.
FINISHED, KILLED, FAILED = "FINISHED", "KILLED", "FAILED"
ACTIVE_STATUSES = ("RUNNING", "SCHEDULED")
EndStatus = Literal["FINISHED", "KILLED", "FAILED"]


class TrackingError(Exception):
    """The tracking backend failed (server unreachable, store of another version ...): one line for the user."""


class NotFoundError(TrackingError):
    """What was asked for is not in the store: the store itself, or the experiment."""


class UnreachableError(TrackingError):
    """The store did not answer (connection refused, timeout, a proxy's 502/503/504, a locked database): the
    same call may work later, so a queue retries it. Every other TrackingError is final for that call."""


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


@dataclass(frozen=True)
class RunRecord:
    """One run as a reader returns it: the final value of every metric, all tags and params as strings."""

    run_id: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    start_time: int | None = None  # milliseconds since the epoch, as MLflow keeps them; None when unknown
    end_time: int | None = None  # None while the run is open


class RunWriter(Protocol):
    """Writes the runs of one experiment (created when missing).

    `open_writer` wraps a backend's writer in `xgrid.tracking.queued.QueuedWriter`, so a search never waits on
    the store; a backend writer may offer two extras the queue uses: `find_run_by_tag(key, value)` (the id of a
    run carrying that tag, or None: makes a retried create_run idempotent) and a `timestamp_ms` keyword on any
    method (the queue fills it with the time of the call, so a run written late keeps its real times)."""

    tracking_uri: str | None
    experiment_id: str

    def create_run(self, name: str, tags: dict[str, str]) -> str:
        """A new RUNNING run in the experiment; returns its id."""

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None: ...

    def log_params(self, run_id: str, params: dict[str, str]) -> None: ...

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        """Copy a local file into the run's artifacts, under `folder` when given."""

    def end_run(self, run_id: str, status: EndStatus) -> None: ...

    def reopen_run(self, run_id: str) -> None:
        """Set an ended run RUNNING again (a resumed search continues its parent run); a no-op on a running one."""


class RunReader(Protocol):
    """Reads runs back from a store that must already exist."""

    tracking_uri: str | None

    def find_experiment(self, experiment: str) -> Experiment:
        """By name, or by id when `experiment` is numeric. NotFoundError (with a did-you-mean) when unknown or
        deleted."""

    def stage_runs(self, experiment_id: str, stage: str) -> list[RunRecord]:
        """Every run of the experiment whose stage tag is `stage`, all pages."""

    def find_parent_run(self, experiment_id: str) -> str | None:
        """The id of the experiment's most recent search run, None when it has none."""
