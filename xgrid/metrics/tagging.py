"""Sequence-tagging metrics (WikiANN/PAN-X NER, UD-POS) via ``seqeval``.

Follows XTREME's ``third_party/run_tag.py`` (google-research/xtreme), which reports
``seqeval.metrics.{f1_score, precision_score, recall_score}`` (micro-averaged, default conlleval-style
chunking, no strict scheme) for *both* NER and POS; accuracy is seqeval's token accuracy.

Tags without a BIO prefix (UD POS tags such as ``"NOUN"``): seqeval reads the first character as the
chunk prefix and the rest as the type (seqeval >= 1.0: ``"NOUN"`` -> prefix ``"N"``, type ``"OUN"``;
XTREME-era seqeval 0.0.x kept the type ``"NOUN"``). A prefix other than B/I/E/S/O never ends a chunk by
itself, so a run of *identical* consecutive tags becomes one span and a change of tag starts a new one.
POS "F1" is therefore span F1 over maximal runs of equal tags, not token accuracy. Tags whose first
letter is a real prefix behave as such (``"SCONJ"``/``"SYM"`` are singletons, ``"INTJ"`` is an I- tag).

Two seqeval >= 1.0 artefacts on UD tags that XTREME-era seqeval (0.0.x) did not have:
``"CCONJ"`` and ``"SCONJ"`` share the type ``"CONJ"``; and ``"X"`` gets the empty type ``"_"``, the same
as the ``"O"`` that seqeval puts between sentences, so an ``X`` run at the end of a sentence is never
closed: it is dropped, or merged across the boundary with an ``X`` run opening the next sentence.
By default this module reports plain seqeval; ``legacy_types=True`` rewrites each prefix-less tag
``T`` as ``T[0] + "-" + T`` (``"NOUN"`` -> ``"N-NOUN"``), which makes seqeval >= 1.0 chunk exactly as
seqeval 0.0.x did (prefix = first character, type = whole tag). ``tests/metrics/test_tagging.py`` pins
both behaviours.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from seqeval.metrics import accuracy_score
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

__all__ = ["seqeval_metrics"]


def _legacy_tag(tag: str) -> str:
    """``"NOUN"`` -> ``"N-NOUN"``: seqeval >= 1.0 then reads prefix ``N`` and type ``NOUN`` (as 0.0.x did)."""
    if tag == "O" or "-" in tag or not tag:
        return tag
    return f"{tag[0]}-{tag}"


def seqeval_metrics(
    predictions: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    *,
    legacy_types: bool = False,
) -> dict[str, float]:
    """Micro span precision/recall/F1 and token accuracy from seqeval, on 0-100.

    ``legacy_types=True`` reproduces XTREME-era seqeval (0.0.x) chunk types for tags without a
    BIO prefix (see the module docstring); it changes nothing for B-/I-/E-/S- tags and ``"O"``.

    Returns ``{"f1", "precision", "recall", "accuracy"}``. Undefined precision/recall (no predicted or
    no gold spans) is reported as 0, as seqeval does, without its warning.

    Raises:
        ValueError: on empty input, a different number of sentences, or a sentence whose prediction
            and reference lengths differ (the message names the sentence index).
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"seqeval_metrics: got {len(predictions)} predicted sentences but {len(references)} reference sentences"
        )
    if len(references) == 0:
        raise ValueError("seqeval_metrics: empty input (no sentences)")
    y_pred: list[list[str]] = []
    y_true: list[list[str]] = []
    for i, (p, r) in enumerate(zip(predictions, references)):
        if isinstance(p, str) or isinstance(r, str):
            raise ValueError(f"seqeval_metrics: sentence {i} must be a list of tags, not a str")
        if len(p) != len(r):
            raise ValueError(
                f"seqeval_metrics: sentence {i} has {len(p)} predicted tags but {len(r)} reference tags"
            )
        if legacy_types:
            y_pred.append([_legacy_tag(t) for t in p])
            y_true.append([_legacy_tag(t) for t in r])
        else:
            y_pred.append(list(p))
            y_true.append(list(r))
    if sum(len(r) for r in y_true) == 0:
        raise ValueError("seqeval_metrics: empty input (all sentences have 0 tokens)")

    with warnings.catch_warnings():
        # seqeval warns once per non-BIO tag ("NOUN seems not to be NE tag."): expected for UD-POS.
        warnings.filterwarnings("ignore", message=r".* seems not to be NE tag\.")
        # One span extraction for all three (f1_score, precision_score and recall_score each redo it).
        precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="micro",
                                                                    zero_division=0)
        return {
            "f1": 100.0 * float(f1),
            "precision": 100.0 * float(precision),
            "recall": 100.0 * float(recall),
            "accuracy": 100.0 * float(accuracy_score(y_true, y_pred)),
        }
