"""Multiple choice (HellaSwag, CommonsenseQA, Cosmos QA, SIQA, COPA/XCOPA): score each (context, choice) pair.

Options: `context` (list of columns joined by a space, default ["ctx"]), `choices` (one list column such as
"endings", a dotted path into a struct column such as "choices.text" (CommonsenseQA), or a list of columns such
as ["choice1", "choice2"]), `label` (default "label"), `label_offset` (subtracted from the label: SIQA's labels
are 1-based), `labels` (names, for string labels that are not numbers: CommonsenseQA's "A".."E"), `question`
(optional column appended to the context).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xgrid.formats.base import ClsHead, TrainedFormat, column, encode, pad_sequences
from xgrid.metrics.classification import accuracy


class MultipleChoice(TrainedFormat):
    name = "multiple_choice"

    def _choices(self, task, batch, i) -> list[str]:
        spec = task.option("choices", "endings")
        if not isinstance(spec, str):
            return [batch[c][i] for c in spec]
        column, *path = spec.split(".")
        value = batch[column][i]
        for key in path:  # "choices.text": the text list inside CommonsenseQA's choices struct
            value = value[key]
        return list(value)

    def featurize(self, examples, tokenizer, task, max_length, training):
        context_cols = task.option("context", ["ctx"])
        question_col = task.option("question")
        label_col, offset = task.option("label", "label"), task.option("label_offset", 0)
        names = task.option("labels")
        as_index = (lambda v: list(names).index(str(v))) if names else (lambda v: int(v) - offset)

        def convert(batch):
            out = {"input_ids": [], "attention_mask": [], "labels": []}
            for i in range(len(batch[label_col])):
                context = " ".join(batch[c][i] for c in context_cols)
                if question_col:
                    context = f"{context} {batch[question_col][i]}"
                choices = self._choices(task, batch, i)
                enc = tokenizer([context] * len(choices), choices, truncation=True, max_length=max_length)
                out["input_ids"].append(enc["input_ids"])
                out["attention_mask"].append(enc["attention_mask"])
                out["labels"].append(as_index(batch[label_col][i]))
            return out

        return examples.map(convert, batched=True, remove_columns=examples.column_names)

    def collate(self, rows, pad_id):
        # Flatten (example, choice) pairs to pad them together, then restore [B, C, T].
        n_choices = len(rows[0]["input_ids"])
        flat_ids = [ids for r in rows for ids in r["input_ids"]]
        flat_mask = [m for r in rows for m in r["attention_mask"]]
        ids, mask = pad_sequences(flat_ids, pad_id), pad_sequences(flat_mask, 0)
        return {"input_ids": ids.view(len(rows), n_choices, -1),
                "attention_mask": mask.view(len(rows), n_choices, -1),
                "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long)}

    def build_head(self, hidden_size, num_outputs):
        return ClsHead(hidden_size, 1)

    def forward(self, encoder, head, batch):
        b, c, t = batch["input_ids"].shape
        flat = {"input_ids": batch["input_ids"].view(b * c, t), "attention_mask": batch["attention_mask"].view(b * c, t)}
        return head(encode(encoder, flat)).view(b, c)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch["labels"])

    def score(self, outputs, features, examples, task, language):
        return accuracy(np.concatenate(outputs).argmax(-1).tolist(), column(features, "labels"))
