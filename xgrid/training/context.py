"""Where a training loop runs: one local process, or one worker of a Ray Train group (DDP or FSDP2).

The phase loop talks only to this interface, so the loop is the same code whether a trial has one worker in
the Tune trial's own process or many workers under a TorchTrainer.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
from torch.utils.data import DataLoader


class TrainContext(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def loader(self, dataset: Any, batch_size: int, shuffle: bool, collate: Callable, seed: int) -> DataLoader: ...

    def full_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]: ...

    def load_full_state_dict(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None: ...

    def report(self, metrics: dict[str, Any]) -> None: ...

    def set_epoch(self, loader: DataLoader, epoch: int) -> None: ...


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


class LocalContext:
    """A single process, no collectives. `reporter` receives every epoch's metrics (Tune's report, a list...)."""

    rank = 0
    world_size = 1

    def __init__(self, reporter: Callable[[dict[str, Any]], None] | None = None, device: str = "cpu"):
        self.device = torch.device(device)
        self._reporter = reporter

    def wrap(self, model):
        return model.to(self.device)

    def loader(self, dataset, batch_size, shuffle, collate, seed):
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)

    def set_epoch(self, loader, epoch):
        if loader.generator is not None:
            loader.generator.manual_seed(loader.generator.initial_seed() + epoch)

    def full_state_dict(self, model):
        return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}

    def load_full_state_dict(self, model, state):
        unwrap(model).load_state_dict(state)

    def report(self, metrics):
        if self._reporter is not None:
            self._reporter(metrics)
