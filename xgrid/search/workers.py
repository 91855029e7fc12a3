"""The code that runs on Ray workers: one phase, either in the calling process (inline) or as a Ray Train run
of `workers_per_trial` workers. Both call the same `run_phase`; only the TrainContext differs."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Callable

import torch

from xgrid.config import Resources
from xgrid.training.context import LocalContext
from xgrid.training.phase import SUMMARY_FILE, PhaseRequest, PhaseResult, run_phase


def limit_threads(resources: Resources) -> None:
    # Two trials on two cores each spawning two intra-op threads would fight for the cores.
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))


def run_inline(request: PhaseRequest, resources: Resources,
               reporter: Callable[[dict[str, Any]], None] | None = None) -> PhaseResult:
    limit_threads(resources)
    return run_phase(request, LocalContext(reporter))


def ray_train_worker(config: dict[str, Any]) -> None:
    """train_loop_per_worker of every TorchTrainer xgrid starts."""

    from xgrid.store import CheckpointStore
    from xgrid.training.ray_context import RayTrainContext

    request: PhaseRequest = config["request"]
    limit_threads(config["resources"])
    ctx = RayTrainContext(config["resources"].strategy)
    store_key = config.get("store_key")
    if store_key is None:
        run_phase(request, ctx)
        return
    # Stage 1: rank 0 writes the selected encoder into the content-addressed store.
    store = CheckpointStore(config["store_root"])
    staging = store.staging_dir(store_key) if ctx.rank == 0 else None
    result = run_phase(replace(request, output_dir=str(staging) if staging else "unused-on-this-rank"), ctx)
    if staging is not None:
        write_summary(staging, result)
        store.commit(store_key, staging)


def write_summary(folder, result: PhaseResult) -> None:
    """The checkpoint carries its own training record; the driver reads it from the store (Train V2 keeps no
    metrics in Result for runs that report without checkpoints)."""
    from pathlib import Path

    (Path(folder) / SUMMARY_FILE).write_text(json.dumps(result.summary()))


def torch_trainer(config: dict[str, Any], resources: Resources, name: str, storage_path: str,
                  callbacks: list[Any] = ()):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    per_worker = {"CPU": resources.cpus_per_worker} | ({"GPU": resources.gpus_per_worker}
                                                       if resources.gpus_per_worker else {})
    # The run is named after the job or trial: a fixed name + storage path would make Train V2 auto-resume an
    # unrelated earlier run from the same folder.
    return TorchTrainer(
        ray_train_worker, train_loop_config=config | {"resources": resources},
        scaling_config=ScalingConfig(num_workers=resources.workers_per_trial, use_gpu=resources.gpus_per_worker > 0,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=list(callbacks)))
