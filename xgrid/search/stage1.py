"""Stage 1: train every unique intermediate checkpoint of the plan once, concurrently on Ray.

A checkpoint already in the store (same content key) is reused and nothing is trained. Inline jobs are Ray
tasks running the phase loop in a (reused) Ray worker process; ray_train jobs are TorchTrainer runs, several
at once from driver threads.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from xgrid.config import SearchSpace
from xgrid.plan import Plan, Stage1Job
from xgrid.recipes import base_model_source, stage1_request
from xgrid.search.events import SearchListener, short_error
from xgrid.search.options import uses_ray_train
from xgrid.search.workers import run_inline, torch_trainer, write_summary
from xgrid.training.phase import SUMMARY_FILE
from xgrid.store import CheckpointStore
from xgrid.tasks import TaskRegistry


class Stage1Error(RuntimeError):
    pass


@ray.remote
def _train_inline(job: Stage1Job, space: SearchSpace, registry: TaskRegistry, store_root: str,
                  base_source: str) -> dict[str, Any]:
    store = CheckpointStore(store_root)
    staging = store.staging_dir(job.key)
    result = run_inline(stage1_request(job, space, registry, base_source, str(staging)), space.resources)
    write_summary(staging, result)
    store.commit(job.key, staging)
    return result.summary()


def run_stage1(plan: Plan, registry: TaskRegistry, store_root: str, storage_path: str,
               listener: SearchListener) -> dict[str, str]:
    """Returns stage-1 key -> loadable encoder folder for every job of the plan (baselines included)."""
    space = plan.space
    store = CheckpointStore(store_root)
    encoders: dict[str, str] = {}
    todo: list[tuple[Stage1Job, str]] = []
    for job in plan.jobs:
        base = base_model_source(job.base_model, space, store.local)
        if not job.trains or store.has(job.key):
            encoders[job.key] = str(store.fetch(job.key)) if job.trains else base
            listener.stage1_finished(job, False, None)
        else:
            todo.append((job, base))
    if uses_ray_train(space.resources):
        outcomes = _run_with_trainers(todo, space, registry, store_root, storage_path, listener)
    else:
        outcomes = _run_as_tasks(todo, space, registry, store_root, listener)
    failures = [f"{job.intermediate} (seed {job.seed}): {err}" for job, err in outcomes if err]
    if failures:
        raise Stage1Error("stage-1 training failed for: " + "; ".join(failures))
    for job, _ in todo:
        encoders[job.key] = str(store.fetch(job.key))
    return encoders


def _run_as_tasks(todo, space, registry, store_root, listener) -> list[tuple[Stage1Job, str | None]]:
    cpus = space.resources.cpus_per_worker
    pending = {}
    for job, base in todo:
        listener.stage1_started(job)
        pending[_train_inline.options(num_cpus=cpus).remote(job, space, registry, store_root, base)] = job
    outcomes = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(done[0])
        try:
            summary = ray.get(done[0])
        except Exception as err:  # keep the others running; report every failure at the end
            listener.stage1_failed(job, short_error(err))
            outcomes.append((job, short_error(err)))
            continue
        listener.stage1_finished(job, True, summary)
        outcomes.append((job, None))
    return outcomes


def _run_with_trainers(todo, space, registry, store_root, storage_path, listener):
    def train(item):
        job, base = item
        listener.stage1_started(job)
        config = {"request": stage1_request(job, space, registry, base, "set-by-rank-0"),
                  "store_key": job.key, "store_root": store_root}
        try:
            result = torch_trainer(config, space.resources, f"stage1-{job.key}", storage_path).fit()
            if result.error:
                raise result.error
        except Exception as err:
            listener.stage1_failed(job, short_error(err))
            return job, short_error(err)
        summary = json.loads((CheckpointStore(store_root).fetch(job.key) / SUMMARY_FILE).read_text())
        listener.stage1_finished(job, True, summary)
        return job, None

    if not todo:
        return []
    with ThreadPoolExecutor(max_workers=space.resources.max_concurrent_trials) as pool:
        return list(pool.map(train, todo))
