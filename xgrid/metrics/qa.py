"""Extractive QA metrics: exact match and token F1 (XQuAD, MLQA, TyDiQA-GoldP, SQuAD v1.1/v2.0).

Follows the official scripts used by XTREME / XTREME-R:

* SQuAD v1.1 ``evaluate-v1.1.py`` (Rajpurkar et al. 2016; XTREME's ``third_party/evaluate_squad.py``):
  lower-case, strip ASCII punctuation (``string.punctuation``), drop the articles a/an/the, collapse
  whitespace; token-level F1 and exact match, each maximised over the gold answers, averaged over
  questions, reported on 0-100.
* SQuAD v2.0 ``evaluate-v2.0.py``: an empty gold list means "no answer"; it is scored as a single gold
  answer ``""``, so a prediction that normalises to the empty string (``""``, but also e.g. ``"the"``)
  scores 1 for EM and F1 and anything else scores 0. With ``version="2.0"`` the other v2 details are
  used too (gold answers that normalise to ``""`` are dropped; F1 between two empty token lists is 1).
* MLQA ``mlqa_evaluation_v1.py`` (facebookresearch/MLQA; XTREME's ``third_party/evaluate_mlqa.py``):
  punctuation is every Unicode character whose category starts with ``P`` plus ``string.punctuation``;
  language-specific articles are removed (en, es, vi, de, ar; none for hi, zh); zh text is tokenised
  with "mixed segmentation" (each CJK character in U+4E00..U+9FA5 is its own token, other runs are
  split on whitespace), so zh F1 is effectively character-level.

XTREME-R summarises a QA task by the mean of EM and F1 (:func:`qa_score`).
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

__all__ = [
    "normalize_answer",
    "f1_score",
    "exact_match_score",
    "squad_metrics",
    "mlqa_normalize_answer",
    "mlqa_tokenize",
    "mlqa_f1_score",
    "mlqa_exact_match_score",
    "mlqa_metrics",
    "qa_score",
    "MLQA_LANGUAGES",
]

# --------------------------------------------------------------------------------------------------
# SQuAD v1.1 / v2.0
# --------------------------------------------------------------------------------------------------

_ASCII_PUNCT = frozenset(string.punctuation)
_EN_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower, remove punctuation, remove articles (a/an/the), fix whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _ASCII_PUNCT)
    s = _EN_ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str, version: str = "1.1") -> float:
    """Token-overlap F1 (0-1) between one prediction and one gold answer after normalisation.

    ``version="1.1"``: no overlap (including both sides empty) gives 0.
    ``version="2.0"``: if either side has no tokens, the score is 1 when both are empty, else 0.
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if version == "2.0" and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    return _token_f1(pred_tokens, gold_tokens)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalised strings are identical, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _token_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_version(version: str) -> None:
    if version not in ("1.1", "2.0"):
        raise ValueError(f"squad_metrics: version must be '1.1' or '2.0', got {version!r}")


def squad_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    version: str = "1.1",
) -> dict[str, float]:
    """Official SQuAD evaluation: ``{"exact_match", "f1"}`` on 0-100, averaged over ``references``.

    Args:
        predictions: question id -> predicted answer text.
        references: question id -> list of gold answer texts; an empty list means "no answer"
            (SQuAD v2.0), for which a prediction normalising to ``""`` scores 1 and anything else 0.
        version: ``"1.1"`` (default; v1.1 per-answer scoring) or ``"2.0"`` (v2.0 per-answer scoring).

    Questions absent from ``predictions`` score 0 and still count in the denominator (as in the
    official v1.1 script, which prints a message); a ``UserWarning`` reports how many. Predictions
    for ids not in ``references`` are ignored.
    """
    _check_version(version)

    def prepare(golds: Sequence[str]) -> list[str]:
        if version == "2.0":
            golds = [g for g in golds if normalize_answer(g)]
        return list(golds) if golds else [""]

    def f1(p: str, g: str) -> float:
        if g == "" or version == "2.0":
            # no-answer gold: v2.0 rule (both empty -> 1, one empty -> 0)
            return f1_score(p, g, version="2.0")
        return f1_score(p, g, version="1.1")

    return _evaluate(predictions, references, prepare, exact_match_score, f1, "squad_metrics")


# --------------------------------------------------------------------------------------------------
# MLQA
# --------------------------------------------------------------------------------------------------

MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MLQA_MIXED_SEGMENTATION_LANGS = ("zh",)
MLQA_LANGUAGES = MLQA_WHITESPACE_LANGS + MLQA_MIXED_SEGMENTATION_LANGS

_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    # Verbatim from the official script: the second alternative removes *every* "ال" substring.
    "ar": re.compile(r"\sال^|ال"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


@lru_cache(maxsize=1)
def _unicode_punct() -> frozenset[str]:
    """All code points whose Unicode category starts with 'P', plus ASCII punctuation (as MLQA)."""
    return frozenset(
        chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")
    ) | _ASCII_PUNCT


def _check_language(language: str) -> None:
    if language not in MLQA_LANGUAGES:
        raise ValueError(f"MLQA evaluation: unknown language {language!r}; expected one of {MLQA_LANGUAGES}")


def _mixed_segmentation(text: str) -> list[str]:
    punct = _unicode_punct()
    out: list[str] = []
    buf = ""
    for ch in text:
        if _CJK.search(ch) or ch in punct:
            if buf:
                out.extend(buf.split())
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(buf.split())
    return out


def mlqa_normalize_answer(s: str, language: str) -> str:
    """MLQA normalisation: lower, remove Unicode punctuation, remove articles of ``language``, re-tokenise."""
    _check_language(language)
    punct = _unicode_punct()
    s = s.lower()
    s = "".join(ch for ch in s if ch not in punct)
    if language in _MLQA_ARTICLES:
        s = _MLQA_ARTICLES[language].sub(" ", s)
    tokens = _mixed_segmentation(s) if language in MLQA_MIXED_SEGMENTATION_LANGS else s.split()
    return " ".join(t for t in tokens if t.strip() != "")


def mlqa_tokenize(s: str, language: str) -> list[str]:
    """Tokens MLQA's F1 is computed on (for zh: one token per CJK character)."""
    return mlqa_normalize_answer(s, language).split()


def mlqa_f1_score(prediction: str, ground_truth: str, language: str) -> float:
    return _token_f1(mlqa_tokenize(prediction, language), mlqa_tokenize(ground_truth, language))


def mlqa_exact_match_score(prediction: str, ground_truth: str, language: str) -> float:
    return float(mlqa_normalize_answer(prediction, language) == mlqa_normalize_answer(ground_truth, language))


def mlqa_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    language: str,
) -> dict[str, float]:
    """Official MLQA evaluation (``mlqa_evaluation_v1.py``): ``{"exact_match", "f1"}`` on 0-100.

    ``language`` is the language of the context/answers (one of en, es, hi, vi, de, ar, zh).
    MLQA has no unanswerable questions: an empty gold list raises ``ValueError``.
    Missing predictions score 0 (with a ``UserWarning``), as in :func:`squad_metrics`.
    """
    _check_language(language)

    def prepare(golds: Sequence[str]) -> list[str]:
        return list(golds)

    def em(p: str, g: str) -> float:
        return mlqa_exact_match_score(p, g, language)

    def f1(p: str, g: str) -> float:
        return mlqa_f1_score(p, g, language)

    return _evaluate(predictions, references, prepare, em, f1, "mlqa_metrics")


# --------------------------------------------------------------------------------------------------
# shared
# --------------------------------------------------------------------------------------------------


def _evaluate(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    prepare: Callable[[Sequence[str]], list[str]],
    em_fn: Callable[[str, str], float],
    f1_fn: Callable[[str, str], float],
    name: str,
) -> dict[str, float]:
    if len(references) == 0:
        raise ValueError(f"{name}: no references given")
    em_total = f1_total = 0.0
    missing = 0
    for qid, golds in references.items():
        if isinstance(golds, str):
            raise ValueError(f"{name}: references[{qid!r}] must be a list of answer strings, got a str")
        gold_list = prepare(golds)
        if not gold_list:
            raise ValueError(f"{name}: references[{qid!r}] is empty; this metric has no 'no answer' case")
        if qid not in predictions:
            missing += 1
            continue
        pred = predictions[qid]
        em_total += max(em_fn(pred, g) for g in gold_list)
        f1_total += max(f1_fn(pred, g) for g in gold_list)
    if missing:
        warnings.warn(f"{name}: {missing} of {len(references)} questions have no prediction; they score 0")
    n = len(references)
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n}


def qa_score(m: Mapping[str, float]) -> float:
    """XTREME-R's QA summary number: mean of exact match and F1."""
    return (m["exact_match"] + m["f1"]) / 2
