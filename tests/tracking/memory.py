"""An in-memory tracking backend: a writer and a reader over plain dicts, registered in `xgrid.tracking.BACKENDS`
like any backend. It is what another backend would have to provide, and nothing of MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from xgrid import tracking, tracking_schema as schema
from xgrid.tracking import Backend, Experiment, NotFoundError, RunRecord

PREFIX = "memory:"


@dataclass
class MemoryRun:
    run_id: str
    name: str
    experiment_id: str
    tags: dict[str, str]
    status: str = "RUNNING"
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(step, value)]
    params: dict[str, str] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)

    def latest(self) -> dict[str, float]:
        """Every metric's value at its highest step (the last one logged there), as a store reports it."""
        return {k: sorted(points, key=lambda p: p[0])[-1][1] for k, points in self.history.items()}


@dataclass
class MemoryStore:
    experiments: dict[str, str] = field(default_factory=dict)  # name -> id
    runs: dict[str, MemoryRun] = field(default_factory=dict)  # in creation order


STORES: dict[str, MemoryStore] = {}


class MemoryWriter:
    def __init__(self, tracking_uri: str, experiment: str):
        self.tracking_uri, self.store = tracking_uri, STORES.setdefault(tracking_uri, MemoryStore())
        self.experiment_id = self.store.experiments.setdefault(experiment, str(len(self.store.experiments)))

    def create_run(self, name: str, tags: dict[str, str]) -> str:
        run_id = f"run{len(self.store.runs)}"
        self.store.runs[run_id] = MemoryRun(run_id, name, self.experiment_id, dict(tags))
        return run_id

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        for name, value in metrics.items():
            self.store.runs[run_id].history.setdefault(name, []).append((step, value))

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        self.store.runs[run_id].params.update(params)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.store.runs[run_id].tags.update(tags)

    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        self.store.runs[run_id].artifacts.append(f"{folder}/{Path(path).name}" if folder else Path(path).name)

    def end_run(self, run_id: str, status: str) -> None:
        self.store.runs[run_id].status = status

    def reopen_run(self, run_id: str) -> None:
        self.store.runs[run_id].status = "RUNNING"


class MemoryReader:
    def __init__(self, tracking_uri: str):
        if tracking_uri not in STORES:
            raise NotFoundError(f"no memory store {tracking_uri}")
        self.tracking_uri, self.store = tracking_uri, STORES[tracking_uri]

    def find_experiment(self, experiment: str) -> Experiment:
        for name, experiment_id in self.store.experiments.items():
            if experiment in (name, experiment_id):
                return Experiment(experiment_id, name)
        raise NotFoundError(f"no experiment {experiment!r}")

    def _runs(self, experiment_id: str, stage: str) -> list[MemoryRun]:
        return [r for r in self.store.runs.values()
                if r.experiment_id == experiment_id and r.tags.get(schema.STAGE) == stage]

    def stage_runs(self, experiment_id: str, stage: str) -> list[RunRecord]:
        return [RunRecord(r.run_id, r.status, dict(r.tags), r.latest(), dict(r.params))
                for r in self._runs(experiment_id, stage)]

    def find_parent_run(self, experiment_id: str) -> str | None:
        parents = self._runs(experiment_id, schema.SEARCH_STAGE)
        return parents[-1].run_id if parents else None


@pytest.fixture
def memory_backend(monkeypatch):
    """`memory:<name>` URIs served by this module, ahead of MLflow; empty stores for every test."""
    backend = Backend(PREFIX, f"{__name__}:MemoryWriter", f"{__name__}:MemoryReader")
    monkeypatch.setattr(tracking, "BACKENDS", [backend, *tracking.BACKENDS])
    STORES.clear()
    yield STORES
    STORES.clear()
