"""One rank's part of an FSDP2 model and optimizer, on disk with torch.distributed.checkpoint (DCP).

Each rank saves its own shards (the local tensors of its DTensors, and whatever it holds whole) as a DCP checkpoint
of its own, written and read without collectives (`no_dist`): a rank never needs another rank's file, so the ranks
of one trial need not share a file system (a trial's scratch folders are per process, and its ranks may sit on
several nodes). A trial's retry checkpoint holds one such part per rank under rank-named folders, which Ray Train
merges into one checkpoint; a restarted rank reads its own. The full model is never assembled for this: that
happens only where a full copy is the point (a stage-1 encoder for the store, a retrieval target's encoder).

The same sharding is needed to read a part back (same model, same number of ranks): `phase_checkpoint` records the
number of ranks and refuses another.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch


def local_view(tree: Any) -> Any:
    """`tree` (nested dicts and lists) with every DTensor replaced by this rank's local tensor: the same storage, so
    loading into the view loads into the DTensor."""
    from torch.distributed.tensor import DTensor

    if isinstance(tree, dict):
        return {key: local_view(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [local_view(value) for value in tree]
    return tree.to_local() if isinstance(tree, DTensor) else tree


def _save(state: dict[str, Any], path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():  # no_dist is the point: each rank writes a checkpoint of its own
        warnings.filterwarnings("ignore", message=".*assuming the intent is to save in a single process")
        dcp.save(state, checkpoint_id=str(path), no_dist=True)


def _load(state: dict[str, Any], path: Path) -> None:
    """Into `state`'s own tensors, in place; its non-tensor values are replaced by the saved ones."""
    import torch.distributed.checkpoint as dcp

    if not (Path(path) / ".metadata").is_file():
        raise FileNotFoundError(f"{path}: not a torch.distributed.checkpoint folder (no .metadata)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(state, checkpoint_id=str(path), no_dist=True)


def resharded(model: torch.nn.Module) -> torch.nn.Module:
    """Every FSDP2 module of `model` back to its sharded parameters. The root module keeps its parameters gathered
    after a forward (FSDP2's default for the root: backward would gather them again at once), so after an
    evaluation pass the root's own parameters (embeddings, heads) are plain tensors while the blocks' are DTensors,
    and loading a state dict then fails with "mixed torch.Tensor and DTensor"."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return model


@torch.no_grad()
def save_model_shards(model: torch.nn.Module, path: Path) -> None:
    """This rank's shards of an FSDP2 model (fp32 master weights, and the buffers each rank keeps whole)."""
    _save(local_view(resharded(model).state_dict()), path)


@torch.no_grad()
def load_model_shards(model: torch.nn.Module, path: Path) -> None:
    """The shards `save_model_shards` wrote, back into this rank's parameters and buffers, whatever the last pass
    left gathered (an earlier epoch's weights reloaded after later epochs evaluated)."""
    _load(local_view(resharded(model).state_dict()), path)


def save_optimizer_shards(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """This rank's optimizer state (keyed by parameter name; the moments are DTensors shaped like the shards)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    _save(local_view(get_optimizer_state_dict(resharded(model), optimizer)), path)


def load_optimizer_shards(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    # get_optimizer_state_dict creates the state of an optimizer that has not stepped yet (a zero-gradient step
    # at learning rate 0), which gives DCP tensors to load into; the hyperparameters (param_groups) are plain
    # values, replaced in the view, so they are put back into the state dict before it is set.
    state = get_optimizer_state_dict(resharded(model), optimizer)
    view = local_view(state)
    _load(view, path)
    state["param_groups"] = view["param_groups"]
    set_optimizer_state_dict(model, optimizer, state)
