"""The three X-STILTs phases chained for one cell in this process, without Ray: base encoder -> intermediate
training (once per content key, through the store) -> fresh head on the target -> zero-shot on every target
language. What a researcher calls to check one configuration, and what benchmarks time."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from xgrid.config import SearchSpace
from xgrid.planning.plan import Cell, Stage1Job
from xgrid.running.encoders import base_model_source, resolve_encoder
from xgrid.running.requests import stage1_request, stage2_request
from xgrid.running.stage1_writer import train_checkpoint
from xgrid.running.store import CheckpointStore
from xgrid.training.context import LocalContext, TrainContext
from xgrid.training.phase import PhaseResult, run_phase


@dataclass
class Stage1Outcome:
    key: str
    encoder: str  # a loadable folder
    trained: bool  # False when the store already had it (or the job is the `none` baseline)
    result: PhaseResult | None


def ensure_stage1(job: Stage1Job, space: SearchSpace, store: CheckpointStore,
                  ctx: TrainContext | None = None) -> Stage1Outcome:
    base = resolve_encoder(base_model_source(job.base_model, space, store))  # this process's own
    if not job.trains:
        return Stage1Outcome(job.key, base, False, None)
    # A corrupt checkpoint is quarantined by `find` and trained again here, as stage 1 of a search does.
    folder = store.find(job.key, on_corrupt=lambda bad: print(
        f"warning: {bad}; moved to {bad.moved_to}; training it again", file=sys.stderr))
    if folder is not None:
        return Stage1Outcome(job.key, str(folder), False, None)
    result = train_checkpoint(stage1_request(job, space, base), job.key, store, ctx or LocalContext())
    return Stage1Outcome(job.key, str(store.fetch(job.key)), True, result)


def fine_tune_target(cell: Cell, learning_rate: float, encoder: str, space: SearchSpace,
                     ctx: TrainContext | None = None) -> PhaseResult:
    """Stage 2 of one cell at one learning rate (a retrieval cell is scored, not trained)."""
    return run_phase(stage2_request(cell, learning_rate, space, encoder), ctx or LocalContext())


def run_cell(cell: Cell, job: Stage1Job, learning_rate: float, space: SearchSpace,
             store_root: str | Path) -> tuple[Stage1Outcome, PhaseResult]:
    """All three phases of one cell in this process."""
    stage1 = ensure_stage1(job, space, CheckpointStore(store_root))
    return stage1, fine_tune_target(cell, learning_rate, stage1.encoder, space)
