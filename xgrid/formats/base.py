"""The contract every task format fulfils, so neither the training loop nor the planner asks which format it holds.

Every format has a registry name and says whether a task of it is fine-tuned (`Format.trains`); `get_format`
returns this common base. A `TrainedFormat` owns featurizing raw rows (in their hub schema) into model inputs,
collating them into a batch, the head on top of the encoder, the forward pass shape, the loss, and turning
collected outputs into its metric. A `ScoredFormat` has no training: it scores the encoder as it is
(retrieval protocols), reading whatever splits its protocol needs through the task's source.

Formats sit below the task registry, so they do not name `TaskSpec`: what they read of a task is the
`FormatTask` protocol, which every `TaskSpec` satisfies.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Protocol

import datasets
import numpy as np
import torch
from torch import nn

from xgrid.data.sources import DataSource, LoadContext, TaskInfo



@dataclass(frozen=True)
class RetrievalSettings:
    """How a scored format embeds text: `hidden_states[layer]` pooled (mean over tokens, or the first token)."""

    layer: int | None = None  # None: the last layer
    pooling: Literal["mean", "cls"] = "mean"
    batch_size: int = 64
    max_length: int = 128


class FormatTask(TaskInfo, Protocol):
    """What a format reads of a task: a source's view of it (name, options) plus the languages it covers (LAReQA
    pools every language's sentences) and its source (scored formats load more than the split they are given)."""

    @property
    def languages(self) -> tuple[str, ...]: ...

    @property
    def source(self) -> DataSource: ...


def encode(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Last hidden states [B, T, H]; every format calls the encoder through here."""
    out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.last_hidden_state


def column(data: Any, name: str) -> list[Any]:
    """A column's values as one list, read in one Arrow query: iterating `dataset[name]` (a lazy `Column`) costs a
    row look-up per value, which on a tagging dev split scored every epoch is a tenth of its evaluation."""
    return data[name][:]


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
    """What every registered format declares."""

    name: ClassVar[str]  # the key of FORMATS a task's `format` names
    trains: ClassVar[bool]  # fine-tuned on (TrainedFormat) or scored from the encoder as it is (ScoredFormat)
    # Scoring one language reads every language's test split (LAReQA's multilingual candidate pool), so a run
    # that evaluates some languages needs the data of all of them.
    reads_every_language: ClassVar[bool] = False


class TrainedFormat(Format):
    """A format whose tasks are fine-tuned: it featurizes, heads, decodes and scores them."""

    trains = True

    # --- data ---------------------------------------------------------------------------------
    @abstractmethod
    def featurize(self, examples: datasets.Dataset, tokenizer: Any, task: FormatTask, max_length: int,
                  training: bool) -> datasets.Dataset:
        """Rows in the hub schema -> model features (one example may give several features: QA windows)."""

    def collate(self, rows: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = {"input_ids": pad_sequences([r["input_ids"] for r in rows], pad_id),
                 "attention_mask": pad_sequences([r["attention_mask"] for r in rows], 0)}
        return batch | self.collate_targets(rows)

    def collate_targets(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {}

    # --- model --------------------------------------------------------------------------------
    def num_outputs(self, task: FormatTask, train_examples: datasets.Dataset | None) -> int:
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
              task: FormatTask, language: str) -> dict[str, float]:
        """Collected per-batch outputs (in feature order) -> the task's metrics, on a 0-100 scale."""


class ScoredFormat(Format):
    """A protocol that scores the encoder as it is, with no training (X-STILTs phase 3 is skipped)."""

    trains = False

    @abstractmethod
    def evaluate_encoder(self, encoder: nn.Module, tokenizer: Any, examples: datasets.Dataset, task: FormatTask,
                         language: str, settings: RetrievalSettings, device: torch.device | str = "cpu",
                         load: LoadContext | None = None) -> dict[str, float]:
        """The test rows of one language -> the task's metrics, on a 0-100 scale. `load` is the phase's
        LoadContext, for protocols that read more than these rows through `task.source`."""


def label_names(task: FormatTask, examples: datasets.Dataset, column: str) -> list[str]:
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
