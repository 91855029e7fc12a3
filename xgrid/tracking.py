"""MLflow tracking of a search, from the driver: a parent run per search and a child run for every stage-1
training, stage-2 trial and retrieval evaluation (names in `xgrid.tracking_schema`).

The tracker listens to search events in the driver process, so every run it opens is closed by a process
that is alive: trials stopped by the scheduler end KILLED, failed ones FAILED, and an interrupted search
closes whatever is open before it exits. Workers never need to reach the tracking server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from xgrid.config import SearchSpace
from xgrid.search.events import SearchListener, TrialRecord
from xgrid import tracking_schema as schema

default_tracking_uri = schema.default_tracking_uri


def local_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database. MLflow's own default is ./mlruns relative
    to whatever folder the search was started from; a tracking server decides for itself (None)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment
    return folder.absolute().as_uri()


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch",)}


def _is_epoch_metric(name: str) -> bool:
    return name in ("train_loss",) or name.startswith(("dev.", "select."))


def _hparams(prefix: str, settings: Any) -> dict[str, str]:
    return {f"{prefix}{k}": str(v) for k, v in settings.model_dump(mode="json").items() if k != "learning_rate"}


class MlflowTracker(SearchListener):
    def __init__(self, tracking_uri: str, experiment: str, space: SearchSpace, registry: Any = None):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.tracking_uri, self.space, self.registry = tracking_uri, space, registry
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=local_artifact_location(tracking_uri, experiment))
        self.parent_id: str | None = None
        self.search_dir: Path | None = None
        self._open: dict[str, str] = {}  # our key -> run id, for everything not yet ended

    # --- helpers --------------------------------------------------------------------------------------------
    def _common_tags(self) -> dict[str, str]:
        r = self.space.retrieval
        return {schema.PARENT_TAG: self.parent_id, "search_id": self.search_dir.name,
                schema.POLICY_TAG: self.space.selection_policy,
                "retrieval_layer": "last" if r.layer is None else str(r.layer), "retrieval_pooling": r.pooling}

    def _start(self, key: str, name: str, tags: dict[str, str], params: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=self._common_tags() | tags)
        run_id = run.info.run_id
        self._log(run_id, params=params)
        self._open[key] = run_id
        return run_id

    def _log(self, run_id: str, metrics: dict[str, float] | None = None, step: int = 0,
             params: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
                              params=[Param(k, v) for k, v in (params or {}).items()])

    def _end(self, key: str, status: str) -> None:
        run_id = self._open.pop(key, None)
        if run_id is not None:
            self.client.set_terminated(run_id, status)

    # --- search ---------------------------------------------------------------------------------------------
    def search_started(self, plan, search_dir):
        self.search_dir = Path(search_dir)
        run = self.client.create_run(self.experiment_id, run_name=f"search-{self.search_dir.name}",
                                     tags={schema.STAGE: schema.SEARCH_STAGE, "search_id": self.search_dir.name,
                                           "space": self.space.name, "space_fingerprint": self.space.fingerprint(),
                                           schema.POLICY_TAG: self.space.selection_policy})
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params={"targets": ",".join(self.space.targets), "seeds": str(self.space.seeds),
                                          "cells": str(len(plan.cells)),
                                          "stage1_jobs": str(len(plan.trained_jobs)),
                                          "trials_per_cell": str(self.space.search.trials_per_cell),
                                          "scheduler": self.space.search.scheduler,
                                          "search_folder": str(self.search_dir)})
        for name in ("space.yaml", "plan.json"):
            if (self.search_dir / name).is_file():
                self.client.log_artifact(self.parent_id, str(self.search_dir / name))

    def search_finished(self, status):
        # Anything still open was cut off by the end of the search (interrupt, stage failure).
        for key in list(self._open):
            self._end(key, "KILLED" if status == "KILLED" else "FAILED")
        if self.parent_id is None:
            return
        for name in ("results.json", "results.csv"):
            if self.search_dir and (self.search_dir / name).is_file():
                self.client.log_artifact(self.parent_id, str(self.search_dir / name))
        self.client.set_terminated(self.parent_id, status)


    # --- stage 1 --------------------------------------------------------------------------------------------
    def _stage1_tags(self, job) -> dict[str, str]:
        return {schema.STAGE: schema.STAGE1, "base_model": job.base_model.name, "intermediate": job.intermediate,
                "intermediate_tasks": ",".join(job.tasks), schema.KIND_TAG: job.kind, "seed": str(job.seed),
                "stage1_key": job.key}

    def stage1_started(self, job):
        params = {"learning_rate": str(self.space.intermediate_training.learning_rate)}
        self._start(f"stage1:{job.key}", f"stage1-{job.intermediate}-s{job.seed}", self._stage1_tags(job),
                    params | _hparams("", self.space.intermediate_training))

    def stage1_finished(self, job, trained, result):
        if not trained:
            return  # reused from the store, or the baseline: nothing was trained in this search
        run_id = self._open[f"stage1:{job.key}"]
        for record in (result or {}).get("history", []):
            self._log(run_id, _numeric(record), step=int(record.get("epoch", 0)))
        for language, metrics in (result or {}).get("final", {}).get("english_dev", {}).items():
            self._log(run_id, _numeric(metrics))
        self._end(f"stage1:{job.key}", "FINISHED")

    def stage1_failed(self, job, error):
        run_id = self._open.get(f"stage1:{job.key}")
        if run_id:
            self.client.set_tag(run_id, "error", error[:5000])
        self._end(f"stage1:{job.key}", "FAILED")

    # --- stage 2 --------------------------------------------------------------------------------------------
    def trial_started(self, record: TrialRecord):
        cell = record.cell
        retrieval = record.trial_id.startswith("retrieval-")
        stage = schema.RETRIEVAL if retrieval else schema.STAGE2
        params = {} if retrieval else ({"learning_rate": str(record.learning_rate)}
                                       | _hparams("", self.space.target_training))
        params |= _hparams("intermediate.", self.space.intermediate_training) | {
            "intermediate.learning_rate": str(self.space.intermediate_training.learning_rate)}
        self._start(record.trial_id, f"{cell.target}-{cell.intermediate}-s{cell.seed}-{record.trial_id[-5:]}",
                    cell.tags() | {schema.STAGE: stage, "trial_id": record.trial_id} | self._metric_tag(cell.target),
                    params)

    def _metric_tag(self, target: str) -> dict[str, str]:
        return {schema.METRIC_TAG: self.registry.get(target).metric} if self.registry is not None else {}

    def trial_result(self, record, metrics):
        run_id = self._open.get(record.trial_id)
        if run_id is not None:
            per_epoch = {k: v for k, v in _numeric(metrics).items() if _is_epoch_metric(k)}
            self._log(run_id, per_epoch, step=int(metrics.get("epoch", 0)))

    def trial_finished(self, record):
        run_id = self._open.get(record.trial_id)
        if run_id is None:
            return
        final = {k: v for k, v in _numeric(record.metrics).items() if not _is_epoch_metric(k)}
        self._log(run_id, final, step=int(record.metrics.get("epoch", 0)))
        self.client.set_tag(run_id, schema.STATUS_TAG, record.status)
        if record.error:
            self.client.set_tag(run_id, "error", record.error[:5000])
        self._end(record.trial_id, {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}[record.status])
