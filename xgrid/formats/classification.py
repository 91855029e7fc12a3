"""Sentence and sentence-pair classification (XNLI, PAWS-X, MNLI, QQP, ...).

Options: `text_a` (default "premise"), `text_b` (default "hypothesis"; None for single sentences),
`label` (default "label"), `labels` (names, when the column is not a ClassLabel).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xgrid.formats.base import ClsHead, FormatTask, TrainedFormat, column, label_indexer, label_names
from xgrid.metrics.classification import accuracy


class Classification(TrainedFormat):
    name = "classification"

    def _columns(self, task: FormatTask) -> tuple[str, str | None, str]:
        return task.option("text_a", "premise"), task.option("text_b", "hypothesis"), task.option("label", "label")

    def featurize(self, examples, tokenizer, task, max_length, training):
        text_a, text_b, label = self._columns(task)
        names = label_names(task, examples, label)
        as_index = label_indexer(examples.features[label], names)

        def convert(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            pair = (batch[text_a], batch[text_b]) if text_b else (batch[text_a],)
            enc = tokenizer(*pair, truncation=True, max_length=max_length)
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "labels": [as_index(v) for v in batch[label]]}

        return examples.map(convert, batched=True, remove_columns=examples.column_names)

    def collate_targets(self, rows):
        return {"labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long)}

    def num_outputs(self, task, train_examples):
        return len(label_names(task, train_examples, self._columns(task)[2]))

    def build_head(self, hidden_size: int, num_outputs: int) -> nn.Module:
        return ClsHead(hidden_size, num_outputs)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch["labels"])

    def score(self, outputs, features, examples, task, language):
        predictions = np.concatenate(outputs).argmax(-1)
        return accuracy(predictions.tolist(), column(features, "labels"))

