"""Token tagging (UD-POS, PAN-X NER, chunking, CCG supertags, dependency relations), scored with seqeval.

Options: `tokens` (default "tokens"), `tags` (default "pos_tags"), `labels` (names, when not a ClassLabel).
The first sub-word of each word carries its label; the others are ignored (-100), as in XTREME.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xgrid.formats.base import TrainedFormat, column, label_indexer, label_names, pad_sequences
from xgrid.metrics.tagging import seqeval_metrics

IGNORE = -100


class TokenHead(nn.Module):
    def __init__(self, hidden_size: int, num_outputs: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(hidden))


class Tagging(TrainedFormat):
    name = "tagging"

    def _columns(self, task):
        return task.option("tokens", "tokens"), task.option("tags", "pos_tags")

    def featurize(self, examples, tokenizer, task, max_length, training):
        tokens_col, tags_col = self._columns(task)
        names = label_names(task, examples, tags_col)
        as_index = label_indexer(examples.features[tags_col], names)

        def convert(batch):
            enc = tokenizer(batch[tokens_col], is_split_into_words=True, truncation=True, max_length=max_length)
            labels = []
            for i, tags in enumerate(batch[tags_col]):
                tag_ids = [as_index(t) for t in tags]
                previous, row = None, []
                for word in enc.word_ids(i):
                    first_piece = word is not None and word != previous
                    row.append(tag_ids[word] if first_piece else IGNORE)
                    previous = word
                labels.append(row)
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}

        return examples.map(convert, batched=True, remove_columns=examples.column_names)

    def collate_targets(self, rows):
        return {"labels": pad_sequences([r["labels"] for r in rows], IGNORE)}

    def num_outputs(self, task, train_examples):
        return len(label_names(task, train_examples, self._columns(task)[1]))

    def build_head(self, hidden_size, num_outputs):
        return TokenHead(hidden_size, num_outputs)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORE)

    def score(self, outputs, features, examples, task, language):
        tokens_col, tags_col = self._columns(task)
        names = label_names(task, examples, tags_col)
        as_index = label_indexer(examples.features[tags_col], names)
        predicted: list[list[str]] = []
        rows = iter(column(features, "labels"))
        for batch_logits in outputs:
            for logits in batch_logits:
                labels = np.asarray(next(rows))
                keep = labels != IGNORE
                predicted.append([names[i] for i in logits[: len(labels)][keep].argmax(-1)])
        gold = [[names[as_index(t)] for t in tags] for tags in column(examples, tags_col)]
        # Words cut off by max_length get no prediction: score them as the first label ("O" in NER),
        # so truncation costs recall instead of silently shrinking the test set.
        predicted = [p + [names[0]] * (len(g) - len(p)) for p, g in zip(predicted, gold)]
        # Tag sets without BIO prefixes (UD POS, CCG, deprel) are scored as XTREME's seqeval 0.0.x did, with
        # the whole tag as the type; current seqeval would read "NOUN" as prefix N + type OUN.
        bio = all(n == "O" or n[:2] in ("B-", "I-", "E-", "S-") for n in names)
        return seqeval_metrics(predicted, gold, legacy_types=not bio)
