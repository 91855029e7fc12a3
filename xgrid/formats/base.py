"""The contract every task format fulfils, so the training loop never asks which format it holds.

A format owns: featurizing raw rows (in their hub schema) into model inputs, collating them into a batch, the
head on top of the encoder, the forward pass shape, the loss, and turning collected outputs into its metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import datasets
import numpy as np
import torch
from torch import nn

from xgrid.tasks.spec import TaskSpec


def encode(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Last hidden states [B, T, H]; every format calls the encoder through here."""
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.last_hidden_state


def pad_sequences(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


class ClsHead(nn.Module):
    """RoBERTa's classification head: dense + tanh on the first token, then a projection."""

    def __init__(self, hidden_size: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = torch.tanh(self.dense(x))
        return self.out(self.dropout(x))


class Format(ABC):
    name: str
    trains: bool = True  # retrieval formats score the encoder as it is

    # --- data ---------------------------------------------------------------------------------
    @abstractmethod
    def featurize(self, examples: datasets.Dataset, tokenizer: Any, task: TaskSpec, max_length: int,
                  training: bool) -> datasets.Dataset:
        """Rows in the hub schema -> model features (one example may give several features: QA windows)."""

    def collate(self, rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = {"input_ids": pad_sequences([r["input_ids"] for r in rows], pad_id),
                 "attention_mask": pad_sequences([r["attention_mask"] for r in rows], 0)}
        return batch | self.collate_targets(rows)

    def collate_targets(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {}

    # --- model --------------------------------------------------------------------------------
    def num_outputs(self, task: TaskSpec, train_examples: datasets.Dataset | None) -> int:
        return 1

    @abstractmethod
    def build_head(self, hidden_size: int, num_outputs: int) -> nn.Module: ...

    def forward(self, encoder: nn.Module, head: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return head(encode(encoder, batch))

    @abstractmethod
    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    # --- evaluation ---------------------------------------------------------------------------
    @abstractmethod
    def score(self, outputs: list[np.ndarray], features: datasets.Dataset, examples: datasets.Dataset,
              task: TaskSpec, language: str) -> dict[str, float]:
        """Collected per-batch outputs (in feature order) -> the task's metrics, on a 0-100 scale."""


def label_names(task: TaskSpec, examples: datasets.Dataset, column: str) -> list[str]:
    """Label names from the task entry, else from the dataset's ClassLabel feature."""
    names = task.option("labels")
    if names:
        return list(names)
    feature = examples.features[column]
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) for tagging
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    raise ValueError(f"task {task.name!r}: column {column!r} has no ClassLabel names; set options.labels")


def label_indexer(feature: Any, names: list[str]) -> Callable[[Any], int]:
    """Value -> label index. ClassLabel / int columns are indices already; strings ("0".."3", "B-PER") map
    through `names`. For sequence columns pass the sequence feature: its element type decides."""
    element = getattr(feature, "feature", feature)
    if isinstance(element, datasets.ClassLabel) or str(getattr(element, "dtype", "")).startswith("int"):
        return int
    index = {name: i for i, name in enumerate(names)}
    return lambda value: index[str(value)]
