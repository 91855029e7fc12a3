"""Stage 1: train every unique intermediate checkpoint of the plan once, concurrently on Ray.

A checkpoint already in the store (same content key) is reused and nothing is trained, once it passes its
manifest check: a corrupt one is reported in one line, quarantined by the store and trained again like a
missing one (the listeners hear an ordinary stage-1 training). Inline jobs are Ray
tasks running the phase loop in a (reused) Ray worker process; ray_train jobs are TorchTrainer runs, several
at once from driver threads. Both commit through the one stage-1 writer (`xgrid.running.stage1_writer`).
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from xgrid.config import SearchSpace
from xgrid.events import SearchListener
from xgrid.nodes import node_name
from xgrid.planning.plan import Plan, Stage1Job
from xgrid.running.encoders import base_model_source, stored
from xgrid.running.requests import stage1_request
from xgrid.running.stage1_writer import read_stored_summary, train_checkpoint
from xgrid.running.store import CheckpointStore, CorruptCheckpoint
from xgrid.search.trial import inline_context, torch_trainer
from xgrid.search.tune_events import short_error


class Stage1Error(RuntimeError):
    pass


@ray.remote
def _train_inline(job: Stage1Job, space: SearchSpace, store_root: str, base_source: str) -> dict[str, Any]:
    result = train_checkpoint(stage1_request(job, space, base_source), job.key, CheckpointStore(store_root),
                              inline_context(space.resources_for(job.base_model.name)))
    return result.summary() | {"node": node_name()}


def run_stage1(plan: Plan, store_root: str, storage_path: str, listener: SearchListener) -> dict[str, str]:
    """Returns stage-1 key -> encoder source for every job of the plan (baselines included): a reference to the
    store's checkpoint (`running.encoders`), which the node running a trial fetches; nothing is downloaded here."""
    space = plan.space
    store = CheckpointStore(store_root)
    encoders: dict[str, str] = {}
    todo: list[tuple[Stage1Job, str]] = []
    for job in plan.jobs:
        base = base_model_source(job.base_model, space, store)
        if not job.trains or store.check(job.key, on_corrupt=report_corrupt):
            encoders[job.key] = stored(job.key, store) if job.trains else base
            listener.stage1_finished(job, False, None)
        else:
            todo.append((job, base))
    outcomes = []
    # Each base model's jobs with its own resources (`model_overrides`), one model after the other.
    for model in space.base_models:
        jobs = [(job, base) for job, base in todo if job.base_model.name == model.name]
        resources = space.resources_for(model.name)
        if not jobs:
            continue
        if resources.uses_ray_train:
            outcomes += _run_with_trainers(jobs, space, resources, store, storage_path, listener)
        else:
            outcomes += _run_as_tasks(jobs, space, resources, store_root, listener)
    failures = [f"{job.intermediate} (seed {job.seed}): {err}" for job, err in outcomes if err]
    for job, err in outcomes:
        if err:
            continue
        damaged: list[CorruptCheckpoint] = []
        if store.check(job.key, on_corrupt=damaged.append):
            encoders[job.key] = stored(job.key, store)
        else:  # damaged (or gone) between its commit and now: not handed out
            why = damaged[0] if damaged else f"checkpoint {job.key} is not in the store {store.root}"
            failures.append(f"{job.intermediate} (seed {job.seed}): {why}")
    if failures:
        raise Stage1Error("stage-1 training failed for: " + "; ".join(failures))
    return encoders


def report_corrupt(bad: CorruptCheckpoint) -> None:
    """One line on stderr (above the live progress, which shows the retraining as any other training)."""
    where = f"; moved to {bad.moved_to}" if bad.moved_to else ""
    print(f"warning: {bad}{where}; training it again", file=sys.stderr, flush=True)


def _run_as_tasks(todo, space, resources, store_root, listener) -> list[tuple[Stage1Job, str | None]]:
    """At most `max_concurrent_trials` jobs are handed to Ray at once, as the trainer path and stage 2 do: the
    rest wait here, so what the progress calls running is running (not queued inside Ray) and a job's start
    event is when it can start."""
    cpus = resources.cpus_per_worker
    waiting, pending, outcomes = list(todo), {}, []

    def submit():
        while waiting and len(pending) < resources.max_concurrent_trials:
            job, base = waiting.pop(0)
            listener.stage1_started(job)
            task = _train_inline.options(num_cpus=cpus, name=f"stage1-{job.intermediate}-s{job.seed}")
            pending[task.remote(job, space, store_root, base)] = job

    submit()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            summary = ray.get(done[0])
        except Exception as err:  # keep the others running; report every failure at the end
            listener.stage1_failed(job, short_error(err))
            outcomes.append((job, short_error(err)))
        else:
            listener.stage1_finished(job, True, summary)
            outcomes.append((job, None))
        submit()
    return outcomes


def _run_with_trainers(todo, space, resources, store, storage_path, listener):
    def train(item):
        job, base = item
        listener.stage1_started(job)
        config = {"request": stage1_request(job, space, base), "store_key": job.key, "store_root": store.root}
        try:
            # Named after the checkpoint, with its key: a unique name (Train V2 would auto-resume a same-named run)
            # that the Ray dashboard shows as what it is.
            name = f"stage1-{job.intermediate}-s{job.seed}-{job.key[:12]}"
            result = torch_trainer(config, resources, name, storage_path).fit()
            if result.error:
                raise result.error
        except Exception as err:
            listener.stage1_failed(job, short_error(err))
            return job, short_error(err)
        try:
            summary = read_stored_summary(store, job.key)
        except (CorruptCheckpoint, FileNotFoundError, ValueError) as bad:
            listener.stage1_failed(job, str(bad))
            return job, str(bad)
        listener.stage1_finished(job, True, summary)
        return job, None

    if not todo:
        return []
    pool = ThreadPoolExecutor(max_workers=resources.max_concurrent_trials)
    try:
        return list(pool.map(train, todo))
    finally:  # on an interrupt, do not wait for running trainers: the runner shuts Ray down, which ends them
        pool.shutdown(wait=False, cancel_futures=True)
