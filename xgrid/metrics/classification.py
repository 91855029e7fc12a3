"""Classification metrics (XNLI, PAWS-X).

XTREME reports plain accuracy for sentence(-pair) classification, computed as in
``simple_accuracy`` of ``third_party/run_classify.py`` (google-research/xtreme):
``(preds == labels).mean()``, here on a 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["accuracy"]


def accuracy(predictions: Sequence[Any] | np.ndarray, references: Sequence[Any] | np.ndarray) -> dict[str, float]:
    """Percentage of positions where ``predictions[i] == references[i]``.

    Labels may be ints or strings (anything comparable with ``==``).

    Raises:
        ValueError: on empty input or when the two sequences differ in length.
    """
    n_pred, n_ref = len(predictions), len(references)
    if n_pred != n_ref:
        raise ValueError(f"accuracy: got {n_pred} predictions but {n_ref} references; lengths must match")
    if n_ref == 0:
        raise ValueError("accuracy: empty input (0 predictions, 0 references); accuracy is undefined")
    correct = sum(1 for p, r in zip(predictions, references) if p == r)
    return {"accuracy": 100.0 * correct / n_ref}
