"""The one way a stage-1 checkpoint gets into the store, whichever process trains it (the local runner, a Ray
task, rank 0 of a TorchTrainer): train into a staging folder, write the training record beside the weights,
commit under the content key (the store adds a manifest of every file's size and sha256, the training record
included, which every later fetch checks). A checkpoint written by any path therefore has the same files under
its key.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from xgrid.nodes import node_name
from xgrid.running.encoders import resolved
from xgrid.running.store import CheckpointStore
from xgrid.training.context import TrainContext
from xgrid.training.phase import SUMMARY_FILE, PhaseRequest, PhaseResult, run_phase


def train_checkpoint(request: PhaseRequest, key: str, store: CheckpointStore, ctx: TrainContext) -> PhaseResult:
    """Run a stage-1 request and commit the selected encoder under `key`. Every rank trains; rank 0 writes.
    The request's own output_dir is ignored: the staging folder is the writer's."""
    staging = store.staging_dir(key) if ctx.rank == 0 else None
    try:
        request = replace(resolved(request), output_dir=str(staging) if staging else None)  # the base, on this node
        result = run_phase(request, ctx)
        if staging is not None:
            (staging / SUMMARY_FILE).write_text(json.dumps(result.summary() | {"node": node_name()}))
            store.commit(key, staging)
    except BaseException:
        if staging is not None:  # a failed or interrupted writer leaves nothing behind, not even a staging folder
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def read_summary(encoder_folder: str | Path) -> dict[str, Any]:
    """The training record a checkpoint carries."""
    return json.loads((Path(encoder_folder) / SUMMARY_FILE).read_text())


def read_stored_summary(store: CheckpointStore, key: str) -> dict[str, Any]:
    """The training record of the store's checkpoint `key`, read without fetching its weights (Train V2 keeps no
    metrics in Result for runs that report without checkpoints, so the driver reads it from the store)."""
    return json.loads(store.read_text(key, SUMMARY_FILE))
