"""Tracking of a search, from the driver: a parent run per search and a child run for every stage-1 training,
stage-2 trial and retrieval evaluation (names in `xgrid.tracking_schema`), written through any `RunWriter`.

The listener hears the search's events in the driver process, so every run it opens is closed by a process
that is alive: trials stopped by the scheduler end KILLED, failed ones FAILED, and an interrupted search
closes whatever is open before it exits. Workers never need to reach the tracking store.

A driver that dies without closing anything (SIGKILL, a node lost) leaves in the search folder's
search_state.json the parent run and the runs it had open (`xgrid.folder_state`), updated on every open and
close: a resumed search reuses that parent run and ends the runs left open KILLED, tagged `xgrid.ended_by`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xgrid import provenance, tracking_schema as schema
from xgrid.config import SearchSpace
from xgrid.events import SearchListener, TrialRecord, selected_trials
from xgrid.planning.plan import Plan, Stage1Job
from xgrid.folder_state import read_state, update_state
from xgrid.nodes import node_name
from xgrid.tracking.base import FAILED, FINISHED, KILLED, RunWriter

# Files of the search folder kept with the parent run: what was planned (and with which code, libraries, model
# and data revisions), then what came out.
START_ARTIFACTS = ("space.yaml", "plan.json", provenance.FILE_NAME)
END_ARTIFACTS = ("results.json", "results.csv")
ERROR_CHARS = 5000  # an error tag holds the reason, not a whole log
ENDED_BY_TAG = "xgrid.ended_by"  # who closed a run that its own driver could not close
ENDED_BY_RESUME = "resume: the driver that ran it died"
RESUMED_TAG = "xgrid.resumes"  # on the parent run: how many times the search was resumed
# On the parent run, from the folder's provenance.json: which xgrid ran the search (the whole record is an artifact).
VERSION_TAG, COMMIT_TAG = "xgrid.version", "xgrid.commit"
RUN_STATUS = {"completed": FINISHED, "stopped": KILLED, "failed": FAILED, "cut_off": KILLED}  # TrialRecord.status -> run status


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of a phase's report (the epoch is the step, not a metric)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != schema.EPOCH}


def _reported(result: dict[str, Any]) -> dict[str, float]:
    """xgrid's own metrics of a trial's result: Tune adds pid, timestamp, time_total_s ... to every one."""
    return {k: v for k, v in _numeric(result).items() if schema.is_xgrid_metric(k)}


def _hparams(prefix: str, settings: Any) -> dict[str, str]:
    """A phase's settings as params; the learning rate is logged on its own (fixed, sampled or absent)."""
    return {f"{prefix}{k}": str(v) for k, v in settings.model_dump(mode="json").items() if k != schema.LEARNING_RATE}


def _step(metrics: dict[str, Any]) -> int:
    return int(metrics.get(schema.EPOCH, 0))


class TrackingListener(SearchListener):
    """Turns search events into runs. The space comes with the plan (`search_started`); everything about a cell
    (its target's metric, whether it trains) comes with the cell, so no registry is needed."""

    def __init__(self, writer: RunWriter):
        self.writer = writer
        self.space: SearchSpace | None = None
        self.parent_id: str | None = None
        self.search_dir: Path | None = None
        self._open: dict[str, str] = {}  # our key -> run id, for everything not yet ended
        self._trial_runs: dict[str, str] = {}  # trial id -> run id, of every trial of the search
        self._round: int | None = None  # a budgeted search's current round: a tag on every run it starts

    @property
    def experiment_id(self) -> str:
        return self.writer.experiment_id

    @property
    def tracking_uri(self) -> str | None:
        return self.writer.tracking_uri

    # --- helpers --------------------------------------------------------------------------------------------
    def _common_tags(self) -> dict[str, str]:
        r = self.space.retrieval
        return {schema.PARENT_TAG: self.parent_id, schema.SEARCH_ID_TAG: self.search_dir.name,
                schema.POLICY_TAG: self.space.selection_policy,
                schema.RETRIEVAL_LAYER_TAG: "last" if r.layer is None else str(r.layer),
                schema.RETRIEVAL_POOLING_TAG: r.pooling} | ({schema.ROUND_TAG: str(self._round)} if self._round else {})

    def _start(self, key: str, name: str, tags: dict[str, str], params: dict[str, str]) -> None:
        run_id = self.writer.create_run(name, self._common_tags() | tags)
        self._open[key] = run_id
        self._save()  # before anything else is logged: a driver killed from here on leaves the run findable
        self.writer.log_params(run_id, params)

    def _end(self, key: str, status: str) -> None:
        run_id = self._open.pop(key, None)
        if run_id is not None:
            self.writer.end_run(run_id, status)
            self._save()

    def _save(self) -> None:
        """The runs a resume needs to know of, in the search folder."""
        update_state(self.search_dir, parent_run_id=self.parent_id, open_runs=dict(self._open),
                     trial_runs=dict(self._trial_runs))

    def _log_files(self, names: tuple[str, ...]) -> None:
        for name in names:
            if (self.search_dir / name).is_file():
                self.writer.log_artifact(self.parent_id, self.search_dir / name)

    # --- search ---------------------------------------------------------------------------------------------
    def search_started(self, plan: Plan, search_dir: str) -> None:
        self.space, self.search_dir = plan.space, Path(search_dir)
        use_folder = getattr(self.writer, "use_folder", None)
        if use_folder is not None:  # a writer that keeps a journal there (and replays what a dead driver left)
            use_folder(self.search_dir)
        state = read_state(self.search_dir)
        if state.get("parent_run_id"):
            self._resume(state)
            return
        space, search_id = plan.space, self.search_dir.name
        self.parent_id = self.writer.create_run(
            f"search-{search_id}", {schema.STAGE: schema.SEARCH_STAGE, schema.SEARCH_ID_TAG: search_id,
                                    schema.SPACE_TAG: space.name, schema.SPACE_FINGERPRINT_TAG: space.fingerprint(),
                                    schema.POLICY_TAG: space.selection_policy,
                                    schema.NODE_TAG: node_name()}  # the driver's
            | self._provenance_tags())
        self.writer.log_params(self.parent_id, {
            "targets": ",".join(space.targets), "seeds": str(space.seeds), "cells": str(len(plan.cells)),
            "stage1_jobs": str(len(plan.trained_jobs)), "trials_per_cell": str(space.search.trials_per_cell),
            "scheduler": space.search.scheduler, "search_folder": str(self.search_dir)})
        self._save()
        self._log_files(START_ARTIFACTS)

    # --- a budgeted search's rounds -----------------------------------------------------------------------------
    def round_started(self, round_no: int, plan: Plan) -> None:
        self._round = round_no
        if round_no == 1 and self.space.budget is not None:
            from xgrid.planning.budget import sequential_design  # the design the rounds follow, stated once

            method = sequential_design(self.space).describe()[:ERROR_CHARS]
            self.writer.set_tags(self.parent_id, {schema.BUDGET_METHOD_TAG: method})

    def round_restored(self, round_no: int, plan: Plan, decisions: list[Any]) -> None:
        self._round = round_no

    def round_finished(self, round_no: int, decisions: list[Any], state: Any) -> None:
        """Each round's decision interval per target, at step = round, and the latest status as tags."""
        from xgrid.planning.budget import stratum_label

        metrics, tags = {}, {}
        for d in decisions:
            label = stratum_label(self.space, d.base_model, d.target)
            metrics |= {schema.budget_key(label, f): float(getattr(d, f)) for f in schema.BUDGET_FIELDS
                        if getattr(d, f) == getattr(d, f)}  # NaN (no interval) is left out
            tags |= {schema.budget_key(label, "status"): d.status, schema.budget_key(label, "round"): str(round_no)}
        metrics |= {f"{schema.BUDGET_PREFIX}spent.{k}": float(v) for k, v in state.spent.items()}
        metrics |= {f"{schema.BUDGET_PREFIX}fixed.{k}": float(v) for k, v in state.fixed.items()}
        self.writer.log_metrics(self.parent_id, metrics, step=round_no)
        self.writer.set_tags(self.parent_id, tags)

    def _provenance_tags(self) -> dict[str, str]:
        """Short tags naming the code that ran; none when the folder has no record (a listener driven by hand)."""
        record = provenance.read(self.search_dir)
        if record is None:
            return {}
        return {VERSION_TAG: str((record.get("xgrid") or {}).get("version")), COMMIT_TAG: provenance.commit_label(record)}

    def _resume(self, state: dict[str, Any]) -> None:
        """The same search, continued by a new driver: its parent run again (reopened if it was closed), its
        trials' runs known (the selected tag may move to one of them), and the runs the dead driver left open
        ended KILLED, saying why. A trial among them runs again in a new run."""
        self.parent_id = state["parent_run_id"]
        self._trial_runs = dict(state.get("trial_runs") or {})
        reopen = getattr(self.writer, "reopen_run", None)
        if reopen is not None:
            reopen(self.parent_id)
        done = self._done_in_results()
        for key, run_id in (state.get("open_runs") or {}).items():
            if run_id == self.parent_id:
                continue
            if key in done:  # killed after results.json had the trial, before its run was closed: close it as done
                trial = done[key]
                final = {k: v for k, v in _reported(trial.get("metrics") or {}).items() if not schema.is_epoch_metric(k)}
                self.writer.log_metrics(run_id, final, step=_step(trial.get("metrics") or {}))
                self.writer.set_tags(run_id, {schema.STATUS_TAG: trial["status"], ENDED_BY_TAG: ENDED_BY_RESUME})
                self.writer.end_run(run_id, RUN_STATUS[trial["status"]])
                continue
            tags = {ENDED_BY_TAG: ENDED_BY_RESUME}
            if not key.startswith("stage1:"):
                tags[schema.STATUS_TAG] = "cut_off"  # not a finished trial: it runs again
            self.writer.set_tags(run_id, tags)
            self.writer.end_run(run_id, KILLED)
        self.writer.set_tags(self.parent_id, {RESUMED_TAG: str(int(state.get("resumes", 0)) + 1)})
        update_state(self.search_dir, resumes=int(state.get("resumes", 0)) + 1)
        self._save()

    def _done_in_results(self) -> dict[str, dict[str, Any]]:
        """Trial id -> the trials results.json lists as done (what a resume keeps and does not rerun)."""
        import json

        try:
            trials = json.loads((self.search_dir / END_ARTIFACTS[0]).read_text()).get("trials", [])
        except (OSError, ValueError, AttributeError):
            return {}
        return {t["trial_id"]: t for t in trials if isinstance(t, dict) and t.get("status") in
                ("completed", "stopped", "failed") and "trial_id" in t}

    def search_finished(self, status: str) -> None:
        # Anything still open was cut off by the end of the search (interrupt, stage failure).
        for key in list(self._open):
            self._end(key, KILLED if status == KILLED else FAILED)
        if self.parent_id is not None:
            self._log_files(END_ARTIFACTS)
            self.writer.end_run(self.parent_id, status)
        close = getattr(self.writer, "close", None)
        if close is not None:  # a queued writer flushes what it holds
            close()
        # From here on the id is for users of the store (the summary, tests): the store's own id once it took the
        # run; a queued writer's local id only while the store has not answered.
        real_id = getattr(self.writer, "real_id", None)
        if real_id is not None and self.parent_id is not None:
            self.parent_id = real_id(self.parent_id)

    # --- stage 1 --------------------------------------------------------------------------------------------
    def stage1_started(self, job: Stage1Job) -> None:
        training = self.space.intermediate_training_for(job.base_model.name)
        self._start(f"stage1:{job.key}", f"stage1-{job.intermediate}-s{job.seed}",
                    {schema.STAGE: schema.STAGE1} | job.tags(),
                    {schema.LEARNING_RATE: str(training.learning_rate)} | _hparams("", training))

    def stage1_finished(self, job: Stage1Job, trained: bool, result: dict[str, Any] | None) -> None:
        if not trained:
            return  # reused from the store, or the baseline: nothing was trained in this search
        run_id = self._open[f"stage1:{job.key}"]
        for record in (result or {}).get("history", []):
            self.writer.log_metrics(run_id, _numeric(record), step=_step(record))
        for metrics in (result or {}).get("final", {}).get(schema.ENGLISH_DEV, {}).values():
            self.writer.log_metrics(run_id, _numeric(metrics))
        if (result or {}).get("node"):
            self.writer.set_tags(run_id, {schema.NODE_TAG: str(result["node"])})
        self._end(f"stage1:{job.key}", FINISHED)

    def stage1_failed(self, job: Stage1Job, error: str) -> None:
        run_id = self._open.get(f"stage1:{job.key}")
        if run_id:
            self.writer.set_tags(run_id, {schema.ERROR_TAG: error[:ERROR_CHARS]})
        self._end(f"stage1:{job.key}", FAILED)

    # --- stage 2 and retrieval ------------------------------------------------------------------------------
    def trial_started(self, record: TrialRecord) -> None:
        cell, stage = record.cell, record.stage
        model = cell.base_model.name
        target = self.space.training_for(cell.target, model)
        intermediate = self.space.intermediate_training_for(model)
        # A retrieval evaluation trains nothing on the target: no learning rate, no target training settings.
        params = ({schema.LEARNING_RATE: str(record.learning_rate)} | _hparams("", target)
                  if stage == schema.STAGE2 else {})
        params |= _hparams(schema.INTERMEDIATE_PARAM_PREFIX, intermediate) | {
            f"{schema.INTERMEDIATE_PARAM_PREFIX}{schema.LEARNING_RATE}": str(intermediate.learning_rate)}
        tags = cell.tags() | {schema.STAGE: stage, schema.TRIAL_ID_TAG: record.trial_id, schema.METRIC_TAG: cell.metric}
        self._start(record.trial_id, f"{cell.target}-{cell.intermediate}-s{cell.seed}-{record.trial_id[-5:]}",
                    tags, params)
        self._trial_runs[record.trial_id] = self._open[record.trial_id]

    def trial_result(self, record: TrialRecord, metrics: dict[str, Any]) -> None:
        run_id = self._open.get(record.trial_id)
        if run_id is not None:
            per_epoch = {k: v for k, v in _reported(metrics).items() if schema.is_epoch_metric(k)}
            self.writer.log_metrics(run_id, per_epoch, step=_step(metrics))

    def trial_finished(self, record: TrialRecord) -> None:
        run_id = self._open.get(record.trial_id)
        if run_id is None:
            return
        final = {k: v for k, v in _reported(record.metrics).items() if not schema.is_epoch_metric(k)}
        self.writer.log_metrics(run_id, final, step=_step(record.metrics))
        self.writer.set_tags(run_id, {schema.STATUS_TAG: record.status}
                             | ({schema.ERROR_TAG: record.error[:ERROR_CHARS]} if record.error else {})
                             | ({schema.NODE_TAG: record.node} if record.node else {}))
        self._end(record.trial_id, RUN_STATUS[record.status])

    def target_finished(self, target: str, records: list[TrialRecord]) -> None:
        """Mark the trial of each cell that the declared policy selects, so the MLflow UI can show the selected
        trials only (`tags.selected = "true"`) and compare them by intermediate_kind."""
        for record in selected_trials(records, self.space.selection_policy).values():
            run_id = self._trial_runs.get(record.trial_id)
            if run_id is not None:
                self.writer.set_tags(run_id, {schema.SELECTED_TAG: "true"})
