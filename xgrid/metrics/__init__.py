"""Standard XTREME / XTREME-R metrics as pure functions over lists and numpy arrays (0-100 scale)."""

from xgrid.metrics.classification import accuracy
from xgrid.metrics.qa import (
    mlqa_metrics,
    mlqa_normalize_answer,
    normalize_answer,
    qa_score,
    squad_metrics,
)
from xgrid.metrics.retrieval import (
    accuracy_at_1,
    bucc_f1,
    bucc_mine,
    bucc_optimal_threshold,
    cls_pool,
    margin_scores,
    mean_average_precision_at_k,
    mean_pool,
)
from xgrid.metrics.tagging import seqeval_metrics

__all__ = [
    "accuracy",
    "accuracy_at_1",
    "bucc_f1",
    "bucc_mine",
    "bucc_optimal_threshold",
    "cls_pool",
    "margin_scores",
    "mean_average_precision_at_k",
    "mean_pool",
    "mlqa_metrics",
    "mlqa_normalize_answer",
    "normalize_answer",
    "qa_score",
    "seqeval_metrics",
    "squad_metrics",
]
