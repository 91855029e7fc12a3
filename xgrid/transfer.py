"""The three X-STILTs phases chained for one cell, without Ray: base encoder -> intermediate training (once per
content key, through the store) -> fresh head on the target -> zero-shot on every target language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xgrid.config import SearchSpace
from xgrid.plan import Cell, Stage1Job
from xgrid.recipes import base_model_source, stage1_request, stage2_request
from xgrid.store import CheckpointStore
from xgrid.tasks import TaskRegistry
from xgrid.training.context import LocalContext, TrainContext
from xgrid.training.phase import PhaseResult, run_phase


@dataclass
class Stage1Outcome:
    key: str
    encoder: str  # a loadable folder
    trained: bool  # False when the store already had it (or the job is the `none` baseline)
    result: PhaseResult | None


def ensure_stage1(job: Stage1Job, space: SearchSpace, registry: TaskRegistry, store: CheckpointStore,
                  ctx: TrainContext | None = None) -> Stage1Outcome:
    base = base_model_source(job.base_model, space, store.local)
    if not job.trains:
        return Stage1Outcome(job.key, base, False, None)
    if store.has(job.key):
        return Stage1Outcome(job.key, str(store.fetch(job.key)), False, None)
    staging = store.staging_dir(job.key)
    result = run_phase(stage1_request(job, space, registry, base, str(staging)), ctx or LocalContext())
    return Stage1Outcome(job.key, str(store.commit(job.key, staging)), True, result)


def run_target(cell: Cell, learning_rate: float, encoder: str, space: SearchSpace, registry: TaskRegistry,
               ctx: TrainContext | None = None) -> PhaseResult:
    return run_phase(stage2_request(cell, learning_rate, space, registry, encoder), ctx or LocalContext())


def run_cell(cell: Cell, job: Stage1Job, learning_rate: float, space: SearchSpace, registry: TaskRegistry,
             store_root: str | Path) -> tuple[Stage1Outcome, PhaseResult]:
    """All three phases of one cell in this process: what a researcher calls to check one configuration."""
    stage1 = ensure_stage1(job, space, registry, CheckpointStore(store_root))
    return stage1, run_target(cell, learning_rate, stage1.encoder, space, registry)
