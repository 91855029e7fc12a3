"""Retrieval targets scored straight from encoder embeddings, with no training (X-STILTs phase 3 is skipped).

The sentence embedding is a pooling (masked mean or first token) of `hidden_states[layer]`, where index 0 is
the embedding layer and index L the last layer (transformers' convention; XTREME uses 14 for XLM-R Large).
Options: `source` / `target` (columns, default "source_sentence" / "target_sentence").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import datasets
import numpy as np
import torch

from xgrid.metrics.retrieval import accuracy_at_1, cls_pool, mean_pool

Pooling = Literal["mean", "cls"]


@dataclass(frozen=True)
class RetrievalSettings:
    layer: int | None = None  # None: the last layer
    pooling: Pooling = "mean"
    batch_size: int = 64
    max_length: int = 128


@torch.no_grad()
def embed(encoder: torch.nn.Module, tokenizer: Any, texts: list[str], settings: RetrievalSettings,
          device: torch.device | str = "cpu") -> np.ndarray:
    encoder.eval()
    pool = mean_pool if settings.pooling == "mean" else cls_pool
    chunks = []
    for start in range(0, len(texts), settings.batch_size):
        enc = tokenizer(texts[start: start + settings.batch_size], truncation=True, max_length=settings.max_length,
                        padding=True, return_tensors="pt").to(device)
        out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        layer = len(out.hidden_states) - 1 if settings.layer is None else settings.layer
        if not -len(out.hidden_states) <= layer < len(out.hidden_states):
            raise ValueError(f"retrieval layer {layer} does not exist: the encoder has hidden_states[0.."
                             f"{len(out.hidden_states) - 1}] (0 = embeddings)")
        hidden = out.hidden_states[layer].float().cpu().numpy()
        chunks.append(pool(hidden, enc["attention_mask"].cpu().numpy()))
    return np.concatenate(chunks)


class ParallelSentenceRetrieval:
    """Tatoeba-style: row i of the source side should retrieve row i of the target side (accuracy@1)."""

    name = "retrieval"
    trains = False

    def evaluate_encoder(self, encoder, tokenizer, examples: datasets.Dataset, task, language: str,
                         settings: RetrievalSettings, device="cpu") -> dict[str, float]:
        src = embed(encoder, tokenizer, list(examples[task.option("source", "source_sentence")]), settings, device)
        trg = embed(encoder, tokenizer, list(examples[task.option("target", "target_sentence")]), settings, device)
        return accuracy_at_1(src, trg)
