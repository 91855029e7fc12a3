"""Retrieval targets scored straight from encoder embeddings, with no training (X-STILTs phase 3 is skipped).

The sentence embedding is a pooling (masked mean or first token) of `hidden_states[layer]`, where index 0 is
the embedding layer and index L the last layer (transformers' convention; XTREME uses 14 for XLM-R Large).
Similarity is cosine everywhere.

Each protocol is its own ScoredFormat (so "scored, not trained" is the format's `trains`, nothing else):

* "retrieval" (Tatoeba): row i of the source side should retrieve row i of the target side; accuracy@1.
  Options `source` / `target` (columns, default "source_sentence" / "target_sentence").
* "bitext_mining" (BUCC 2018): mine pairs between the two sides by ratio-margin scores over `neighbours` (4)
  nearest neighbours, tune the threshold that maximises F1 on the dev (BUCC "sample") split and report
  precision / recall / F1 of the test split at that threshold. Rows hold a source sentence and id and a target
  sentence and id (`source`, `target`, `source_id`, `target_id`); a gold pair is a row with both ids; a row with
  one side empty is an unpaired sentence.
* "answer_retrieval" (LAReQA) and "entity_retrieval" (Mewsli-X): rank a candidate pool for each query, mean
  average precision at `k` (20); they differ only in their pool (`RankingRetrieval`). LAReQA's rows are
  SQuAD-style (id, context, question, answers): each language's questions retrieve, from the sentences of every
  language's contexts, the sentence holding the answer in each language (same question id). The hub copy of
  XQuAD-R has no sentence breaks, so sentences are re-split at sentence-final punctuation. A candidate is
  encoded as (sentence, context) when `candidate_context` is true (default). Mewsli-X's rows are mentions
  (mention, context, entity_id) and the candidates the source's `load_candidates` (entity_id, description); a
  query is encoded as (mention, context).

All but Tatoeba read more than the test rows (the dev split, the other languages, the candidate set) through
the task's source, so `evaluate_encoder` takes the phase's `LoadContext` as `load`.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Any, NamedTuple

import datasets
import numpy as np
import torch

from xgrid.data.sources import LoadContext, MissingSplitError
from xgrid.formats.base import FormatTask, RetrievalSettings, ScoredFormat, column
from xgrid.metrics.retrieval import (accuracy_at_1, bucc_f1, bucc_mine, bucc_optimal_threshold, cls_pool,
                                     l2_normalize, mean_average_precision_at_k, mean_pool)



@torch.no_grad()
def embed(encoder: torch.nn.Module, tokenizer: Any, texts: list[str], settings: RetrievalSettings,
          device: torch.device | str = "cpu", texts_b: list[str] | None = None) -> np.ndarray:
    """Pooled `hidden_states[settings.layer]` of each text (or text pair, with `texts_b`): [n, hidden]."""
    encoder.eval()
    pool = mean_pool if settings.pooling == "mean" else cls_pool
    chunks = []
    for start in range(0, len(texts), settings.batch_size):
        batch = [texts[start: start + settings.batch_size]]
        if texts_b is not None:
            batch.append(texts_b[start: start + settings.batch_size])
        enc = tokenizer(*batch, truncation=True, max_length=settings.max_length, padding=True,
                        return_tensors="pt").to(device)
        out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        layer = len(out.hidden_states) - 1 if settings.layer is None else settings.layer
        if not -len(out.hidden_states) <= layer < len(out.hidden_states):
            raise ValueError(f"retrieval layer {layer} does not exist: the encoder has hidden_states[0.."
                             f"{len(out.hidden_states) - 1}] (0 = embeddings)")
        hidden = out.hidden_states[layer].float().cpu().numpy()
        chunks.append(pool(hidden, enc["attention_mask"].cpu().numpy()))
    return np.concatenate(chunks)


def _clean(texts) -> list[str]:
    return [str(t).strip() for t in texts]


class ParallelSentenceRetrieval(ScoredFormat):
    """Tatoeba: each source sentence retrieves its translation among the target side; accuracy@1."""

    name = "retrieval"

    def evaluate_encoder(self, encoder, tokenizer, examples: datasets.Dataset, task: FormatTask, language: str,
                         settings: RetrievalSettings, device="cpu", load: LoadContext | None = None) -> dict[str, float]:
        src = embed(encoder, tokenizer, _clean(column(examples, task.option("source", "source_sentence"))), settings, device)
        trg = embed(encoder, tokenizer, _clean(column(examples, task.option("target", "target_sentence"))), settings, device)
        return accuracy_at_1(src, trg)


def _needs_load(task: FormatTask, load: LoadContext | None, what: str) -> LoadContext:
    if load is None:
        raise ValueError(f"task {task.name!r}: scoring needs {what}; pass the phase's LoadContext as load=")
    return load


class BitextMining(ScoredFormat):
    """BUCC 2018: margin-based mining, threshold tuned on the dev split and applied to the test split."""

    name = "bitext_mining"

    def _sides(self, examples: datasets.Dataset, task):
        s_col, t_col = task.option("source", "source_sentence"), task.option("target", "target_sentence")
        s_id, t_id = task.option("source_id", "source_lang"), task.option("target_id", "target_lang")
        source: dict[str, str] = {}
        target: dict[str, str] = {}
        gold: set[tuple[str, str]] = set()
        for s_text, t_text, s, t in zip(examples[s_col], examples[t_col], examples[s_id], examples[t_id]):
            if s and s_text:
                source.setdefault(s, s_text.strip())
            if t and t_text:
                target.setdefault(t, t_text.strip())
            if s and t:
                gold.add((s, t))
        return source, target, gold

    def _mine(self, encoder, tokenizer, examples, task, settings, device):
        source, target, gold = self._sides(examples, task)
        if not source or not target or not gold:
            raise ValueError(f"task {task.name!r}: bitext mining needs sentences on both sides and gold pairs")
        s_ids, t_ids = list(source), list(target)
        s_emb = embed(encoder, tokenizer, [source[i] for i in s_ids], settings, device)
        t_emb = embed(encoder, tokenizer, [target[i] for i in t_ids], settings, device)
        return bucc_mine(s_emb, s_ids, t_emb, t_ids, k=task.option("neighbours", 4)), gold

    def evaluate_encoder(self, encoder, tokenizer, examples, task, language, settings, device="cpu", load=None):
        load = _needs_load(task, load, "the dev (sample) split to tune the mining threshold")
        dev = task.source.load(task, language, "dev", load)
        dev_candidates, dev_gold = self._mine(encoder, tokenizer, dev, task, settings, device)
        threshold = bucc_optimal_threshold(dev_candidates, dev_gold)
        test_candidates, test_gold = self._mine(encoder, tokenizer, examples, task, settings, device)
        return bucc_f1(test_candidates, test_gold, threshold) | {"threshold": float(threshold)}


# Sentence ends: ., !, ? (with optional closing quotes/brackets) before whitespace; CJK and Devanagari
# full stops (。！？।) end a sentence with or without a following space.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|(?<=[。！？।])\s*")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text` (whitespace between them belongs to none)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start() if match.group(0).strip() == "" else match.start() + len(match.group(0).rstrip())
        if end > start and text[start:end].strip():
            spans.append((start, end))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans or [(0, len(text))]


def map_at_k_chunked(queries: np.ndarray, candidates: np.ndarray, relevant: list[set[int]], k: int,
                     max_elems: int = 1 << 24) -> dict[str, float]:
    """`mean_average_precision_at_k` over cosine scores, in query chunks so 1M candidates fit in memory.

    For each chunk only the columns that are in some query's top k, or relevant to one, are kept: a query's top k
    is the same among those columns as among all (columns keep their order, so ties still go to the lower index),
    hence the result equals the dense computation exactly."""
    q, c = l2_normalize(queries), l2_normalize(candidates)
    step = max(1, max_elems // c.shape[0])
    total, kk = 0.0, min(k, c.shape[0])
    for start in range(0, q.shape[0], step):
        scores = q[start: start + step] @ c.T
        chunk_relevant = relevant[start: start + scores.shape[0]]
        if kk < c.shape[0]:
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            # ties at the cut-off: keep every column scoring at least the k-th best of some query
            kth = np.take_along_axis(scores, top, axis=1).min(axis=1, keepdims=True)
            keep = np.flatnonzero((scores >= kth).any(axis=0))
            keep = np.union1d(keep, np.fromiter((i for rel in chunk_relevant for i in rel), dtype=np.int64))
        else:
            keep = np.arange(c.shape[0])
        position = {int(col): j for j, col in enumerate(keep)}
        result = mean_average_precision_at_k(scores[:, keep], [{position[i] for i in rel} for rel in chunk_relevant], k)
        total += result[f"map@{k}"] * scores.shape[0]
    return {f"map@{k}": total / q.shape[0]}


class Pool(NamedTuple):
    """What a ranking protocol ranks: query texts and candidate texts (each optionally paired with a second text
    for the tokenizer), and for each query the indices of its relevant candidates."""

    queries: list[str]
    query_pairs: list[str] | None
    candidates: list[str]
    candidate_pairs: list[str] | None
    relevant: list[set[int]]


class RankingRetrieval(ScoredFormat):
    """Rank a candidate pool for each query; mAP@k. Subclasses say what the pool is."""

    @abstractmethod
    def pool(self, examples: datasets.Dataset, task: FormatTask, load: LoadContext | None) -> Pool:
        """The queries of `examples` and the pool they rank."""

    def evaluate_encoder(self, encoder, tokenizer, examples, task, language, settings, device="cpu", load=None):
        queries, q_pairs, candidates, c_pairs, relevant = self.pool(examples, task, load)
        keep = [i for i, rel in enumerate(relevant) if rel]
        if not keep:
            raise ValueError(f"task {task.name!r} ({language}): no query has a relevant candidate in the pool")
        q_emb = embed(encoder, tokenizer, [queries[i] for i in keep], settings, device,
                      [q_pairs[i] for i in keep] if q_pairs is not None else None)
        c_emb = embed(encoder, tokenizer, candidates, settings, device, c_pairs)
        return map_at_k_chunked(q_emb, c_emb, [relevant[i] for i in keep], task.option("k", 20))


class AnswerRetrieval(RankingRetrieval):
    """LAReQA: questions retrieve answer sentences from the sentences of every language's contexts."""

    name = "answer_retrieval"
    reads_every_language = True

    def pool(self, examples, task, load):
        load = _needs_load(task, load, "every language's contexts for the multilingual candidate pool")
        sentences, contexts, answer_sentence = [], [], {}  # answer_sentence: (lang, question id) -> candidate
        for lang in task.languages:
            try:
                rows = task.source.load(task, lang, "test", load)
            except MissingSplitError:
                continue
            seen: dict[str, list[tuple[int, int, int]]] = {}
            for qid, context, answers in zip(rows["id"], rows["context"], rows["answers"]):
                if context not in seen:
                    seen[context] = []
                    for start, end in split_sentences(context):
                        seen[context].append((start, end, len(sentences)))
                        sentences.append(context[start:end].strip())
                        contexts.append(context)
                if answers["answer_start"]:
                    begin = answers["answer_start"][0]
                    hit = next((i for s, e, i in seen[context] if s <= begin < e), seen[context][-1][2])
                    answer_sentence[(lang, qid)] = hit
        relevant = [{i for (lang, qid), i in answer_sentence.items() if qid == question_id} for question_id in examples["id"]]
        c_pairs = contexts if task.option("candidate_context", True) else None
        return Pool([q.strip() for q in examples["question"]], None, sentences, c_pairs, relevant)


class EntityRetrieval(RankingRetrieval):
    """Mewsli-X: mentions in context retrieve their entity's description from the source's candidate set."""

    name = "entity_retrieval"

    def pool(self, examples, task, load):
        load = _needs_load(task, load, "the candidate set")
        loader = getattr(task.source, "load_candidates", None)
        if loader is None:
            raise ValueError(f"task {task.name!r}: its source has no candidate set (load_candidates)")
        candidates = loader(task, load)
        index = {eid: i for i, eid in enumerate(candidates["entity_id"])}
        relevant = [{index[e]} if e in index else set() for e in examples["entity_id"]]
        return Pool(_clean(examples["mention"]), _clean(examples["context"]), _clean(candidates["description"]), None,
                    relevant)
