"""Where a phase's encoder comes from, named so that every node of a cluster can find it.

The driver never hands a trial one of its own local paths (a node that does not share its file system would not
find them, and the phase would then take the path for a hub id). An encoder is a hub id, a folder the user named
in the space, or a checkpoint in the store, `xgrid-store:<key>@<store root>`: every stage-1 encoder, and the embedded tiny
model, which the driver builds once and commits to the store like any checkpoint. The process that runs the
phase resolves the reference itself (`resolve_encoder`): the store fetches the checkpoint into that node's cache
(verified against its manifest; a remote root's cache is evicted by size, `running.store`).
"""

from __future__ import annotations

import functools
from dataclasses import replace

from xgrid.config import EMBEDDED_TINY, BaseModelSpec, SearchSpace
from xgrid.running.store import CheckpointStore
from xgrid.training.phase import PhaseRequest

STORE_SCHEME = "xgrid-store:"


def stored(key: str, store: CheckpointStore) -> str:
    """The encoder source of checkpoint `key` in `store` (keys are hex digests and `tiny-<digest>`: no `@`)."""
    return f"{STORE_SCHEME}{key}@{store.root}"


def parse_stored(source: str) -> tuple[str, str] | None:
    """(key, store root) of a store reference; None for any other source."""
    if not source.startswith(STORE_SCHEME):
        return None
    key, at, root = source[len(STORE_SCHEME):].partition("@")
    if not at or not key or not root:
        raise ValueError(f"encoder source {source!r}: expected {STORE_SCHEME}<key>@<store root>")
    return key, root


def resolve_encoder(source: str) -> str:
    """A folder or hub id `from_pretrained` can load, on this node: a store checkpoint is fetched into this
    node's cache (or read in place from a local root) and verified."""
    parsed = parse_stored(source)
    if parsed is None:
        return source
    key, root = parsed
    return str(_store(root).fetch(key))


@functools.lru_cache(maxsize=8)
def _store(root: str) -> CheckpointStore:
    # One per root and process: a checkpoint is verified (hashed) once per process, not once per trial of a reused
    # trial actor.
    return CheckpointStore(root)


def resolved(request: PhaseRequest) -> PhaseRequest:
    """The request with its encoder source resolved on this node: what every process calls before run_phase."""
    return replace(request, encoder_source=resolve_encoder(request.encoder_source))


def tiny_model_key(microbench_seed: int) -> str:
    from xgrid.models.tiny import TinyModelConfig

    return f"tiny-{TinyModelConfig().key(microbench_seed)}"


def base_model_source(base: BaseModelSpec, space: SearchSpace, store: CheckpointStore) -> str:
    """The base model's encoder source: the embedded tiny model is built once (on the driver) and committed to
    the store, so every node loads the same weights; a hub id or a named folder is what the space says."""
    if base.source != EMBEDDED_TINY:
        return base.source
    from xgrid.data import microbench
    from xgrid.models.tiny import build_tiny_model

    key = tiny_model_key(space.microbench_seed)
    if not store.check(key):  # whole, without a download (a damaged copy is quarantined and built again)
        staging = store.staging_dir(key)
        build_tiny_model(staging, microbench.corpus(seed=space.microbench_seed))
        store.commit(key, staging)
    return stored(key, store)
