"""The code that runs on Ray workers: one phase, either in the calling process (inline) or as a Ray Train run
of `workers_per_trial` workers. Both call the same `run_phase` (through the stage-1 writer for stage 1); only
the TrainContext differs.

Stage-2 trials checkpoint every epoch: an inline trial through Tune (`TuneCheckpoints`), a TorchTrainer's workers
through Train. A retry (Tune's FailureConfig for an inline trial, Train's for a TorchTrainer's workers) continues
from that checkpoint."""

from __future__ import annotations

from typing import Any, Callable

import torch

from xgrid.config import Resources
from xgrid.running.encoders import resolved
from xgrid.training.context import CheckpointSink, LocalContext
from xgrid.training.phase import PhaseRequest, PhaseResult, run_phase


def limit_threads(resources: Resources) -> None:
    # Two trials on two cores each spawning two intra-op threads would fight for the cores.
    torch.set_num_threads(max(1, int(resources.cpus_per_worker)))


def inline_context(resources: Resources, reporter: Callable[[dict[str, Any]], None] | None = None,
                   checkpoints: CheckpointSink | None = None) -> LocalContext:
    limit_threads(resources)
    return LocalContext(reporter, checkpoints=checkpoints, activation_checkpointing=resources.activation_checkpointing)


def run_inline(request: PhaseRequest, resources: Resources,
               reporter: Callable[[dict[str, Any]], None] | None = None,
               checkpoints: CheckpointSink | None = None) -> PhaseResult:
    """In this process, on this node: the encoder is fetched here (`running.encoders`)."""
    return run_phase(resolved(request), inline_context(resources, reporter, checkpoints))


class TuneCheckpoints:
    """An inline Tune trial's checkpoints: reported with their epoch's metrics (Tune copies the folder into the
    trial's storage before `report` returns), and handed back by Tune to the trial it restarts."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str) -> None:
        from ray import tune

        from xgrid.search.tune_metrics import tune_report

        tune_report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    def latest(self) -> str | None:
        from ray import tune

        from xgrid.training.ray_context import local_folder

        return local_folder(tune.get_checkpoint())


def ray_train_worker(config: dict[str, Any]) -> None:
    """train_loop_per_worker of every TorchTrainer xgrid starts: a stage-2 request, or (with `store_key`) a
    stage-1 request whose encoder rank 0 commits to the store."""
    from xgrid.training.ray_context import RayTrainContext

    resources: Resources = config["resources"]
    limit_threads(resources)
    ctx = RayTrainContext(resources.strategy, checkpointing=bool(config.get("checkpointing")),
                          activation_checkpointing=resources.activation_checkpointing,
                          cpu_offload=resources.cpu_offload, precision=resources.precision)
    if config.get("store_key") is None:
        run_phase(resolved(config["request"]), ctx)  # every worker fetches the encoder on its own node
        return
    from xgrid.running.stage1_writer import train_checkpoint
    from xgrid.running.store import CheckpointStore

    train_checkpoint(config["request"], config["store_key"], CheckpointStore(config["store_root"]), ctx)


def torch_trainer(config: dict[str, Any], resources: Resources, name: str, storage_path: str,
                  callbacks: list[Any] = (), max_failures: int = 0):
    """`max_failures`: how often Train restarts the worker group after a worker dies, each time from the last
    checkpoint the workers reported (those with `config["checkpointing"]` report one every epoch)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    per_worker = {"CPU": resources.cpus_per_worker} | ({"GPU": resources.gpus_per_worker}
                                                       if resources.gpus_per_worker else {})
    # The run is named after the job or trial: a fixed name + storage path would make Train V2 auto-resume an
    # unrelated earlier run from the same folder.
    return TorchTrainer(
        ray_train_worker, train_loop_config=config | {"resources": resources},
        scaling_config=ScalingConfig(num_workers=resources.workers_per_trial, use_gpu=resources.gpus_per_worker > 0,
                                     resources_per_worker=per_worker),
        run_config=RunConfig(name=name, storage_path=storage_path, callbacks=list(callbacks),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))  # the latest is all a retry needs
