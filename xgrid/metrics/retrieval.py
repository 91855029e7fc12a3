"""Retrieval metrics and sentence-embedding pooling (Tatoeba, BUCC, LAReQA, Mewsli-X).

* Tatoeba (XTREME ``third_party/evaluate_retrieval.py``): accuracy@1 of nearest-neighbour search by
  cosine similarity, the correct target of source row ``i`` being target row ``i``.
* BUCC 2018 (XTREME ``third_party/utils_retrieve.py``, after LASER): ratio-margin scoring of
  Artetxe & Schwenk (2019),
  ``score(x, y) = cos(x, y) / (sum_{z in NN_k(x)} cos(x, z) / 2k + sum_{z in NN_k(y)} cos(y, z) / 2k)``,
  candidate mining with ``mode="mine"``, ``retrieval="max"`` (forward and backward best candidates among
  the k nearest neighbours, merged greedily one-to-one by decreasing score, keeping scores > 0), threshold
  tuned to maximise F1 (``bucc_optimize``) and applied with ``score >= threshold`` (``bucc_extract``).
  Differences: pairs are keyed by ids given by the caller (the official script de-duplicates identical
  sentence texts first), and neighbours are exact (dense numpy, chunked) instead of faiss.
* LAReQA / Mewsli-X (XTREME-R, ``average_precision_at_k`` in LAReQA's evaluation code): mAP@k where a
  query's AP@k is ``sum over relevant ranks i <= k of precision@i`` divided by ``min(k, #relevant)``.
  Ties in the score are broken by the lower candidate index first (the official ``argsort()[::-1]``
  leaves tie order unspecified).

Scores are on 0-100 except the raw margin scores and thresholds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

__all__ = [
    "l2_normalize",
    "accuracy_at_1",
    "knn_cosine",
    "margin_scores",
    "bucc_mine",
    "bucc_optimal_threshold",
    "bucc_f1",
    "mean_average_precision_at_k",
    "mean_pool",
    "cls_pool",
]

# Rows of the similarity matrix computed at once: keeps the dense block near 2**25 floats (128 MiB).
_BLOCK_ELEMS = 1 << 25


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, dim], got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    return a


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; raises on zero rows (cosine similarity is undefined there)."""
    x = _as_2d(x, "embeddings")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise ValueError(f"embedding row {bad} is all zeros; cosine similarity is undefined")
    return x / norms


def accuracy_at_1(source_emb: np.ndarray, target_emb: np.ndarray) -> dict[str, float]:
    """Tatoeba accuracy: share (0-100) of source rows whose cosine-nearest target row has the same index.

    ``target_emb`` may have more rows than ``source_emb`` (extra rows act as distractors). Exact ties
    go to the lowest target index.
    """
    x = l2_normalize(source_emb)
    y = l2_normalize(target_emb)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: source {x.shape[1]} vs target {y.shape[1]}")
    if y.shape[0] < x.shape[0]:
        raise ValueError(f"target has {y.shape[0]} rows, fewer than the {x.shape[0]} source rows")
    correct = 0
    step = max(1, _BLOCK_ELEMS // y.shape[0])
    for start in range(0, x.shape[0], step):
        sims = x[start : start + step] @ y.T
        best = sims.argmax(axis=1)
        correct += int(np.sum(best == np.arange(start, start + sims.shape[0])))
    return {"accuracy": 100.0 * correct / x.shape[0]}


def knn_cosine(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``x``, the ``min(k, len(y))`` most cosine-similar rows of ``y``.

    Returns ``(sims, inds)`` of shape ``[len(x), k']``, sorted by decreasing similarity (ties: lower
    index first). Inputs need not be normalised.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    x = l2_normalize(x)
    y = l2_normalize(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    kk = min(k, y.shape[0])
    sims_out = np.empty((x.shape[0], kk))
    inds_out = np.empty((x.shape[0], kk), dtype=np.int64)
    step = max(1, _BLOCK_ELEMS // y.shape[0])
    for start in range(0, x.shape[0], step):
        sims = x[start : start + step] @ y.T
        order = _top_k(sims, kk)
        sims_out[start : start + sims.shape[0]] = np.take_along_axis(sims, order, axis=1)
        inds_out[start : start + sims.shape[0]] = order
    return sims_out, inds_out


def _top_k(sims: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of the ``kk`` largest entries per row, by decreasing value (ties: lower index)."""
    n = sims.shape[1]
    if kk < n:
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), sims.shape)
    vals = np.take_along_axis(sims, part, axis=1)
    # sort the selected columns by (-value, index)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def margin_scores(x: np.ndarray, y: np.ndarray, k: int = 4) -> np.ndarray:
    """Dense ratio-margin score matrix ``[len(x), len(y)]`` (Artetxe & Schwenk 2019).

    ``score[i, j] = cos(x_i, y_j) / (mean_{z in NN_k(x_i)} cos(x_i, z) / 2 + mean_{z in NN_k(y_j)} cos(y_j, z) / 2)``
    where ``NN_k(x_i)`` are the k nearest rows of ``y`` and ``NN_k(y_j)`` the k nearest rows of ``x``
    (``k`` is clipped to the other side's size, as the official script does). Memory is
    O(len(x) * len(y)); :func:`bucc_mine` scores only the k-NN candidates instead.
    """
    xn = l2_normalize(x)
    yn = l2_normalize(y)
    fwd_sims, _ = knn_cosine(xn, yn, k)
    bwd_sims, _ = knn_cosine(yn, xn, k)
    fwd_mean = fwd_sims.mean(axis=1)
    bwd_mean = bwd_sims.mean(axis=1)
    return (xn @ yn.T) / ((fwd_mean[:, None] + bwd_mean[None, :]) / 2)


def bucc_mine(
    src_emb: np.ndarray,
    src_ids: Sequence[Hashable],
    trg_emb: np.ndarray,
    trg_ids: Sequence[Hashable],
    k: int = 4,
) -> list[tuple[float, Hashable, Hashable]]:
    """Mine candidate parallel pairs as XTREME does for BUCC (``mine_bitext``, retrieval ``"max"``).

    Each source row's best target among its k nearest neighbours by margin score (forward) and each
    target row's best source among its k nearest (backward) are pooled, sorted by decreasing score and
    accepted greedily so that every source and every target id is used at most once; pairs with score
    <= 0 are dropped. Returns ``[(score, src_id, trg_id), ...]`` sorted by decreasing score.
    """
    x = l2_normalize(src_emb)
    y = l2_normalize(trg_emb)
    if len(src_ids) != x.shape[0] or len(trg_ids) != y.shape[0]:
        raise ValueError(
            f"ids/embeddings mismatch: {len(src_ids)} src ids for {x.shape[0]} rows, "
            f"{len(trg_ids)} trg ids for {y.shape[0]} rows"
        )
    fwd_sims, fwd_inds = knn_cosine(x, y, k)
    bwd_sims, bwd_inds = knn_cosine(y, x, k)
    fwd_mean = fwd_sims.mean(axis=1)
    bwd_mean = bwd_sims.mean(axis=1)
    # margin scores of the k-NN candidates only (score_candidates in the official script)
    fwd_scores = fwd_sims / ((fwd_mean[:, None] + bwd_mean[fwd_inds]) / 2)
    bwd_scores = bwd_sims / ((bwd_mean[:, None] + fwd_mean[bwd_inds]) / 2)
    fwd_arg = fwd_scores.argmax(axis=1)
    bwd_arg = bwd_scores.argmax(axis=1)
    n_x, n_y = x.shape[0], y.shape[0]
    fwd_best = fwd_inds[np.arange(n_x), fwd_arg]
    bwd_best = bwd_inds[np.arange(n_y), bwd_arg]
    src_idx = np.concatenate([np.arange(n_x), bwd_best])
    trg_idx = np.concatenate([fwd_best, np.arange(n_y)])
    scores = np.concatenate([fwd_scores[np.arange(n_x), fwd_arg], bwd_scores[np.arange(n_y), bwd_arg]])

    seen_src: set[int] = set()
    seen_trg: set[int] = set()
    out: list[tuple[float, Hashable, Hashable]] = []
    for i in np.argsort(-scores, kind="stable"):
        s, t = int(src_idx[i]), int(trg_idx[i])
        if s in seen_src or t in seen_trg:
            continue
        seen_src.add(s)
        seen_trg.add(t)
        if scores[i] > 0:
            out.append((float(scores[i]), src_ids[s], trg_ids[t]))
    return out


def _candidate_scores(
    candidates: Iterable[tuple[float, Hashable, Hashable]],
) -> dict[tuple[Hashable, Hashable], float]:
    """(src_id, trg_id) -> best score (the official reader keeps the max over duplicates)."""
    best: dict[tuple[Hashable, Hashable], float] = {}
    for score, s, t in candidates:
        key = (s, t)
        best[key] = max(float(score), best.get(key, float(score)))
    return best


def _gold_set(gold_pairs: Iterable[tuple[Hashable, Hashable]]) -> set[tuple[Hashable, Hashable]]:
    gold = {(s, t) for s, t in gold_pairs}
    if not gold:
        raise ValueError("gold_pairs is empty")
    return gold


def bucc_optimal_threshold(
    candidates: Iterable[tuple[float, Hashable, Hashable]],
    gold_pairs: Iterable[tuple[Hashable, Hashable]],
) -> float:
    """Threshold maximising F1 of ``{pairs with score >= threshold}`` against ``gold_pairs``.

    As ``bucc_optimize``: walk candidates by decreasing score; whenever F1 of the top-i improves, set
    the threshold halfway between the i-th and (i+1)-th score (at the last candidate, its own score,
    where the official script would index past the end). Returns 0.0 if no candidate is correct.
    """
    items = sorted(_candidate_scores(candidates).items(), key=lambda kv: -kv[1])
    gold = _gold_set(gold_pairs)
    n_gold = len(gold)
    n_extract = n_correct = 0
    threshold = 0.0
    best_f1 = 0.0
    for i, (pair, score) in enumerate(items):
        n_extract += 1
        if pair in gold:
            n_correct += 1
        if n_correct > 0:
            precision = n_correct / n_extract
            recall = n_correct / n_gold
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1 = f1
                threshold = (score + items[i + 1][1]) / 2 if i + 1 < len(items) else score
    return threshold


def bucc_f1(
    candidates: Iterable[tuple[float, Hashable, Hashable]],
    gold_pairs: Iterable[tuple[Hashable, Hashable]],
    threshold: float,
) -> dict[str, float]:
    """Precision/recall/F1 (0-100) of the candidate pairs with ``score >= threshold`` (``bucc_extract``)."""
    extracted = {pair for pair, score in _candidate_scores(candidates).items() if score >= threshold}
    gold = _gold_set(gold_pairs)
    n_correct = len(gold & extracted)
    if n_correct == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision = n_correct / len(extracted)
    recall = n_correct / len(gold)
    f1 = 2 * precision * recall / (precision + recall)
    return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1}


def mean_average_precision_at_k(
    scores: np.ndarray,
    relevant: Sequence[Iterable[int]],
    k: int = 20,
) -> dict[str, float]:
    """LAReQA / Mewsli-X mAP@k (0-100), returned under the key ``f"map@{k}"``.

    Args:
        scores: ``[n_queries, n_candidates]``, higher = more relevant.
        relevant: for each query, the set of relevant candidate indices (non-empty).
        k: cut-off.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_queries, n_candidates], got shape {scores.shape}")
    n_q, n_c = scores.shape
    if n_q == 0:
        raise ValueError("scores has no queries")
    if len(relevant) != n_q:
        raise ValueError(f"got {len(relevant)} relevant sets for {n_q} queries")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    total = 0.0
    for q in range(n_q):
        rel = set(int(r) for r in relevant[q])
        if not rel:
            raise ValueError(f"query {q} has no relevant candidates; AP is undefined")
        if min(rel) < 0 or max(rel) >= n_c:
            raise ValueError(f"query {q}: relevant index out of range [0, {n_c})")
        ranked = np.argsort(-scores[q], kind="stable")[:k]
        hits = 0
        ap = 0.0
        for rank, cand in enumerate(ranked, start=1):
            if int(cand) in rel:
                hits += 1
                ap += hits / rank
        total += ap / min(k, len(rel))
    return {f"map@{k}": 100.0 * total / n_q}


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Masked mean over the token axis: ``[batch, seq, dim]`` x ``[batch, seq]`` -> ``[batch, dim]``."""
    hidden = np.asarray(hidden, dtype=np.float64)
    mask = np.asarray(attention_mask, dtype=np.float64)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden [batch, seq, dim] and mask [batch, seq], got {hidden.shape} and {mask.shape}")
    counts = mask.sum(axis=1)
    if np.any(counts == 0):
        bad = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"attention_mask row {bad} is all zeros; mean pooling is undefined")
    return (hidden * mask[:, :, None]).sum(axis=1) / counts[:, None]


def cls_pool(hidden: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
    """First-token ("[CLS]" / "<s>") vector: ``[batch, seq, dim]`` -> ``[batch, dim]``.

    ``attention_mask`` is accepted for symmetry with :func:`mean_pool` and ignored.
    """
    hidden = np.asarray(hidden)
    if hidden.ndim != 3 or hidden.shape[1] == 0:
        raise ValueError(f"expected hidden [batch, seq>0, dim], got {hidden.shape}")
    return hidden[:, 0, :]
