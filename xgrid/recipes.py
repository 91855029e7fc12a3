"""Turn plan objects (stage-1 jobs, cells) and the validated space into phase requests.

This is the one place that maps config fields onto training arguments, shared by the plain three-phase
run, stage 1 and stage 2.
"""

from __future__ import annotations

from pathlib import Path

from xgrid.config import EMBEDDED_TINY, BaseModelSpec, SearchSpace
from xgrid.formats import RetrievalSettings
from xgrid.plan import Cell, Stage1Job
from xgrid.tasks import LoadContext, TaskRegistry
from xgrid.training.phase import Hparams, PhaseRequest


def load_context(space: SearchSpace) -> LoadContext:
    return LoadContext(microbench_seed=space.microbench_seed, local_paths=dict(space.local_paths))


def base_model_source(base: BaseModelSpec, space: SearchSpace, store_root: str | Path) -> str:
    """A loadable source for a base model: the embedded tiny model is built (once) under the store."""
    if base.source == EMBEDDED_TINY:
        from xgrid.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model(store_root, space.microbench_seed))
    return base.source


def stage1_request(job: Stage1Job, space: SearchSpace, registry: TaskRegistry, base_source: str,
                   output_dir: str) -> PhaseRequest:
    settings = space.intermediate_training
    return PhaseRequest(
        encoder_source=base_source, train_tasks=tuple(registry.get(t) for t in job.tasks),
        hparams=Hparams.from_settings(settings, settings.learning_rate, space.resources.precision),
        seed=job.seed, selection_policy="english_dev", load=load_context(space), output_dir=output_dir)


def stage2_request(cell: Cell, learning_rate: float, space: SearchSpace, registry: TaskRegistry,
                   encoder_source: str) -> PhaseRequest:
    target = registry.get(cell.target)
    return PhaseRequest(
        encoder_source=encoder_source, train_tasks=(registry.train_task_of(target),) if target.trains else (),
        hparams=Hparams.from_settings(space.target_training, learning_rate, space.resources.precision),
        seed=cell.seed, eval_task=target, selection_policy=space.selection_policy, load=load_context(space),
        retrieval=RetrievalSettings(space.retrieval.layer, space.retrieval.pooling))


def fixed_learning_rate(space: SearchSpace) -> float:
    """The learning rate of an unsearched space, or the geometric middle of a searched one (for plain runs)."""
    lr = space.target_training.learning_rate
    if isinstance(lr, float):
        return lr
    if hasattr(lr, "values"):
        return sorted(lr.values)[len(lr.values) // 2]
    return (lr.low * lr.high) ** 0.5
