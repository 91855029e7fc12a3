"""Extractive span QA (SQuAD v1.1/v2.0, XQuAD, MLQA, TyDiQA-GoldP) with the standard sliding-window recipe.

Options: `version_2` (SQuAD v2.0 no-answer handling), `metric_variant` ("squad" or "mlqa": MLQA's
language-aware answer normalisation), `doc_stride` (default 128, scaled down for short max_length),
`max_answer_length` (default 30 tokens).
Columns follow SQuAD: id, context, question, answers{text, answer_start}.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xgrid.formats.base import TrainedFormat, column, encode
from xgrid.metrics.qa import mlqa_metrics, qa_score, squad_metrics

QA_SCORE = "em_f1"  # (EM + F1) / 2, XTREME-R's QA score: the primary metric of the QA targets


class SpanHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(hidden)  # [B, T, 2]: start and end logits


class SpanQA(TrainedFormat):
    name = "span_qa"

    def featurize(self, examples, tokenizer, task, max_length, training):
        doc_stride = task.option("doc_stride", min(128, max_length // 4))

        def convert(batch):
            questions = [q.lstrip() for q in batch["question"]]
            stride = _stride_that_fits(tokenizer, questions, max_length, doc_stride)
            enc = tokenizer(questions, batch["context"], truncation="only_second",
                            max_length=max_length, stride=stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True)
            out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                   "example_id": [], "offsets": [], "start_positions": [], "end_positions": []}
            for f, example in enumerate(enc["overflow_to_sample_mapping"]):
                sequence_ids = enc.sequence_ids(f)
                # Offsets outside the context become None, so decoding can never pick question tokens.
                out["offsets"].append([o if s == 1 else None for o, s in zip(enc["offset_mapping"][f], sequence_ids)])
                out["example_id"].append(batch["id"][example])
                start, end = _answer_positions(batch["answers"][example], enc["offset_mapping"][f], sequence_ids)
                out["start_positions"].append(start)
                out["end_positions"].append(end)
            return out

        return examples.map(convert, batched=True, remove_columns=examples.column_names)

    def collate_targets(self, rows):
        return {"start_positions": torch.tensor([r["start_positions"] for r in rows]),
                "end_positions": torch.tensor([r["end_positions"] for r in rows])}

    def build_head(self, hidden_size, num_outputs):
        return SpanHead(hidden_size)

    def forward(self, encoder, head, batch):
        logits = head(encode(encoder, batch))
        # Padding can never be an answer boundary.
        return logits.masked_fill(batch["attention_mask"].unsqueeze(-1) == 0, torch.finfo(logits.dtype).min)

    def loss(self, outputs, batch):
        start, end = outputs.unbind(-1)
        return (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2

    def score(self, outputs, features, examples, task, language):
        max_answer = task.option("max_answer_length", 30)
        version_2 = task.option("version_2", False)
        best: dict[str, tuple[float, str]] = {}
        null: dict[str, float] = {}
        contexts = dict(zip(column(examples, "id"), column(examples, "context")))
        rows = iter(zip(column(features, "example_id"), column(features, "offsets")))
        for batch_logits in outputs:
            for logits in batch_logits:
                example_id, offsets = next(rows)
                start_logits, end_logits = logits[: len(offsets), 0], logits[: len(offsets), 1]
                null[example_id] = min(null.get(example_id, np.inf), float(start_logits[0] + end_logits[0]))
                score, text = _best_span(start_logits, end_logits, offsets, contexts[example_id], max_answer)
                if score > best.get(example_id, (-np.inf, ""))[0]:
                    best[example_id] = (score, text)
        predictions = {}
        for example_id in contexts:
            score, text = best.get(example_id, (-np.inf, ""))
            # SQuAD v2: answer "" when the null span beats every real span (the official default threshold 0).
            predictions[example_id] = "" if version_2 and null.get(example_id, -np.inf) > score else text
        references = {i: list(a["text"]) for i, a in zip(column(examples, "id"), column(examples, "answers"))}
        if task.option("metric_variant", "squad") == "mlqa":
            scores = mlqa_metrics(predictions, references, language)
        else:
            scores = squad_metrics(predictions, references)
        # XTREME-R's score of a QA task is the mean of EM and F1; both stay in the record.
        return scores | {QA_SCORE: qa_score(scores)}


def _stride_that_fits(tokenizer, questions: list[str], max_length: int, doc_stride: int) -> int:
    """The window overlap must be shorter than the context room a question leaves (the tokenizer panics
    otherwise); too little room is a configuration error worth saying in words."""
    longest = max(len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"])
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room < 2:
        raise ValueError(f"max_length {max_length} leaves no room for the context after a question of {longest} "
                         f"tokens; raise max_length (target_training / intermediate_training)")
    return min(doc_stride, room // 2)


def _answer_positions(answers, offsets, sequence_ids) -> tuple[int, int]:
    """Token positions of the first gold answer inside this window; (0, 0) (the CLS token) when it is not."""
    if not answers["text"]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = next(i for i in range(first, last + 1) if offsets[i][1] > start_char)
    end = next(i for i in range(last, first - 1, -1) if offsets[i][0] < end_char)
    return start, end


def _best_span(start_logits, end_logits, offsets, context: str, max_answer: int, top_k: int = 20):
    best_score, best_text = -np.inf, ""
    starts = np.argsort(start_logits)[::-1][:top_k]
    ends = np.argsort(end_logits)[::-1][:top_k]
    for s in starts:
        for e in ends:
            if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best_score:
                best_score, best_text = score, context[offsets[s][0]: offsets[e][1]].strip()
    return best_score, best_text
