"""Turn plan objects (stage-1 jobs, cells) into phase requests: the one place that maps the validated space's
training fields onto a phase's arguments, shared by the local runner, stage 1 and stage 2.

Everything a request needs is already on the job or cell (its resolved `TaskSpec`s) and on the space.
"""

from __future__ import annotations

from xgrid.config import SearchSpace
from xgrid.data.sources import LoadContext
from xgrid.formats.retrieval import RetrievalSettings
from xgrid.planning.plan import Cell, Stage1Job
from xgrid.tracking_schema import ENGLISH_DEV
from xgrid.training.phase import Hparams, PhaseRequest


def load_context(space: SearchSpace) -> LoadContext:
    return LoadContext(microbench_seed=space.microbench_seed, local_paths=dict(space.local_paths))


def stage1_request(job: Stage1Job, space: SearchSpace, base_source: str) -> PhaseRequest:
    """Where the encoder is written is the stage-1 writer's business (`running.stage1_writer`)."""
    model = job.base_model.name
    settings = space.intermediate_training_for(model)
    # An intermediate checkpoint is always selected on its own tasks' English dev: there is no target yet.
    return PhaseRequest(
        encoder_source=base_source, train_tasks=job.task_specs,
        hparams=Hparams.from_settings(settings, settings.learning_rate, space.resources_for(model).precision),
        seed=job.seed, selection_policy=ENGLISH_DEV, load=load_context(space))


def stage2_request(cell: Cell, learning_rate: float, space: SearchSpace, encoder_source: str) -> PhaseRequest:
    return PhaseRequest(
        encoder_source=encoder_source, train_tasks=(cell.train_task,) if cell.trains else (),
        hparams=Hparams.from_settings(space.training_for(cell.target, cell.base_model.name), learning_rate,
                                      space.resources_for(cell.base_model.name).precision),
        seed=cell.seed, eval_task=cell.target_task, eval_languages=cell.languages,
        selection_policy=space.selection_policy,
        load=load_context(space), retrieval=RetrievalSettings(space.retrieval.layer, space.retrieval.pooling))
