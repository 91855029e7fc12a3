"""Where a training loop runs: one local process, or one worker of a Ray Train group (DDP or FSDP2).

The phase loop talks only to this interface, so the loop is the same code whether a trial has one worker in
the Tune trial's own process or many workers under a TorchTrainer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch.utils.data import DataLoader


class TrainContext(Protocol):
    rank: int
    world_size: int
    device: torch.device
    # Whether the phase should write a checkpoint at the end of every epoch (someone keeps it for a retry).
    checkpointing: bool
    # Whether this process reads the encoder's weights (False: it builds the shape on the meta device and `wrap`
    # fills it, e.g. an FSDP rank other than 0).
    loads_weights: bool

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def loader(self, dataset: Any, batch_size: int, shuffle: bool, collate: Callable, seed: int) -> DataLoader: ...

    # Whether each rank holds only its part of the weights (FSDP): each saves and reloads its own part.
    sharded: bool

    def save_weights(self, model: torch.nn.Module, path: Path) -> None:
        """This rank's weights of `model` at `path`: the full state as a safetensors file, or (sharded) this rank's
        shards as a torch.distributed.checkpoint folder. Collective-free."""

    def load_weights(self, model: torch.nn.Module, path: Path) -> None:
        """What `save_weights` wrote, back into `model`."""

    def full_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's weights on rank 0's CPU (a collective when sharded; the other ranks get nothing)."""

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, by rank (a collective)."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """One epoch's metrics, with the folder of that epoch's checkpoint when the phase wrote one (rank 0).
        The folder is the phase's own: it is deleted once this returns, so the checkpoint must be persisted."""

    def latest_checkpoint(self) -> str | None:
        """A local folder holding the last checkpoint this trial reported before its worker died; None on a
        first attempt."""

    def set_epoch(self, loader: DataLoader, epoch: int) -> None: ...


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def save_full_weights(model: torch.nn.Module, path: Path) -> None:
    """The whole model's state as one safetensors file (a single process, or a DDP rank: each holds it all).
    safetensors' model functions keep tied weights (mT5's shared embeddings) once, where save_file refuses them."""
    from safetensors.torch import save_model

    save_model(unwrap(model), str(path))


def load_full_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import load_model

    load_model(unwrap(model), str(path))


def enable_activation_checkpointing(model: torch.nn.Module) -> torch.nn.Module:
    """`resources.activation_checkpointing`: the encoder (a PhaseModel's) recomputes each transformer block's
    activations in backward instead of keeping them (Hugging Face's gradient checkpointing, non-reentrant, which
    FSDP2 and DDP both accept). Applied before any wrapping; a no-op outside training mode (evaluation keeps
    nothing to recompute)."""
    encoder = getattr(model, "encoder", model)
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise ValueError(f"resources.activation_checkpointing: {type(encoder).__name__} does not support "
                         "activation checkpointing (gradient checkpointing in Hugging Face's terms); turn it off")
    # transformers 5 renamed it (the old name warns until v6); both checkpoint each block's `forward`, so module hooks
    # such as FSDP2's run once, outside the recomputation.
    enable = getattr(encoder, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


class CheckpointSink(Protocol):
    """Where a single-process phase's checkpoints go (Tune's trial storage, or a plain folder)."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str) -> None:
        """Persist the folder's checkpoint together with its epoch's metrics (both, in one report)."""

    def latest(self) -> str | None: ...


class FolderCheckpoints:
    """Keeps the latest checkpoint in `root/latest` (no Ray): a local run, or a test of resumption. Metrics go on
    to `reporter`."""

    def __init__(self, root: str | Path, reporter: Callable[[dict[str, Any]], None] | None = None):
        self.root, self._reporter = Path(root), reporter

    def report(self, metrics, checkpoint_dir):
        incoming, latest, old = self.root / "incoming", self.root / "latest", self.root / "previous"
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.copytree(checkpoint_dir, incoming)
        # Swapped by renames: a crash at any point leaves `latest` or `previous` whole.
        shutil.rmtree(old, ignore_errors=True)
        if latest.exists():
            latest.rename(old)
        incoming.rename(latest)
        shutil.rmtree(old, ignore_errors=True)
        if self._reporter is not None:
            self._reporter(metrics)

    def latest(self):
        for name in ("latest", "previous"):
            if (self.root / name).is_dir():
                return str(self.root / name)
        return None


class LocalContext:
    """A single process, no collectives. `reporter` receives every epoch's metrics (Tune's report, a list...);
    with `checkpoints`, an epoch that has a checkpoint is reported through it instead, metrics included."""

    rank = 0
    world_size = 1
    loads_weights = True
    sharded = False

    def __init__(self, reporter: Callable[[dict[str, Any]], None] | None = None, device: str = "cpu",
                 checkpoints: CheckpointSink | None = None, activation_checkpointing: bool = False):
        self.device = torch.device(device)
        self._reporter = reporter
        self._checkpoints = checkpoints
        self.activation_checkpointing = activation_checkpointing

    @property
    def checkpointing(self) -> bool:
        return self._checkpoints is not None

    def wrap(self, model):
        if self.activation_checkpointing:
            enable_activation_checkpointing(model)
        return model.to(self.device)

    def loader(self, dataset, batch_size, shuffle, collate, seed):
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)

    def set_epoch(self, loader, epoch):
        if loader.generator is not None:
            loader.generator.manual_seed(loader.generator.initial_seed() + epoch)

    def save_weights(self, model, path):
        save_full_weights(model, path)

    def load_weights(self, model, path):
        load_full_weights(model, path)

    def full_state_dict(self, model):
        return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}

    def all_gather(self, value):
        return [value]

    def report(self, metrics, checkpoint_dir=None):
        if checkpoint_dir is not None and self._checkpoints is not None:
            self._checkpoints.report(metrics, checkpoint_dir)
        elif self._reporter is not None:
            self._reporter(metrics)

    def latest_checkpoint(self):
        return self._checkpoints.latest() if self._checkpoints is not None else None
