import warnings

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from xgrid.metrics import seqeval_metrics


def _entities(seq):
    """seqeval's own span extraction, without its "seems not to be NE tag" warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_entities(seq)


def test_bio_partial_spans_precision_differs_from_recall():
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O", "O"]]
    # gold spans: PER(0-1), LOC(3), ORG(0-2) -> 3; predicted: PER(0-1), ORG(0-1) -> 2
    # only PER matches exactly (ORG is partial -> counts as wrong): TP = 1
    # P = 1/2, R = 1/3, F1 = 2*(1/6)/(5/6) = 2/5
    # token accuracy: 8 tokens, wrong at sentence 0 pos 3 and sentence 1 pos 2 -> 6/8
    out = seqeval_metrics(preds, refs)
    assert out["precision"] == pytest.approx(50.0)
    assert out["recall"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(40.0)
    assert out["accuracy"] == pytest.approx(75.0)
    assert set(out) == {"f1", "precision", "recall", "accuracy"}


def test_default_mode_accepts_span_starting_with_I():
    # conlleval-style (non-strict) chunking: I-PER I-PER is the same span as B-PER I-PER
    out = seqeval_metrics([["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]])
    assert out["f1"] == pytest.approx(100.0)


def test_spans_do_not_cross_sentences():
    # sentence 0 ends with B-PER, sentence 1 starts with I-PER: two spans, not one.
    # gold = pred -> 2 spans each, all match
    tags = [["O", "B-PER"], ["I-PER", "O"]]
    assert seqeval_metrics(tags, tags)["f1"] == pytest.approx(100.0)
    assert _entities(tags) == [("PER", 1, 1), ("PER", 3, 3)]  # flattened with an "O" between sentences


# --------------------------------------------------------------------- tags without a BIO prefix (UD POS)


def test_seqeval_no_prefix_pos_tags_pinned():
    # seqeval 1.x reads the first character as the prefix and the rest as the type:
    # "NOUN" -> prefix "N", type "OUN". Runs of identical tags merge into one span.
    assert _entities(["NOUN", "NOUN", "VERB", "DET", "NOUN"]) == [
        ("OUN", 0, 1),
        ("ERB", 2, 2),
        ("ET", 3, 3),
        ("OUN", 4, 4),
    ]
    # "X" -> prefix "X", empty type "_", the same type as the "O" separator/sentinel, so nothing
    # closes an X run at the end of a sequence: it is dropped ...
    assert _entities(["X"]) == []
    assert _entities(["X", "NOUN"]) == [("_", 0, 0), ("OUN", 1, 1)]
    # ... or merged across the sentence boundary (flattened: NOUN X O X VERB -> X span 1..3)
    assert _entities([["NOUN", "X"], ["X", "VERB"]]) == [("OUN", 0, 0), ("_", 1, 3), ("ERB", 4, 4)]


def test_pos_f1_is_span_f1_over_runs_not_token_accuracy():
    refs = [["NOUN", "NOUN", "VERB", "DET", "NOUN"]]
    preds = [["NOUN", "VERB", "VERB", "DET", "NOUN"]]
    # gold runs: NOUN(0-1) VERB(2) DET(3) NOUN(4) -> 4; pred runs: NOUN(0) VERB(1-2) DET(3) NOUN(4) -> 4
    # matches: DET(3), NOUN(4) -> TP 2: P = R = F1 = 2/4 = 50, while token accuracy = 4/5 = 80
    out = seqeval_metrics(preds, refs)
    assert out["f1"] == pytest.approx(50.0)
    assert out["precision"] == pytest.approx(50.0)
    assert out["recall"] == pytest.approx(50.0)
    assert out["accuracy"] == pytest.approx(80.0)


def test_pos_precision_differs_from_recall():
    refs = [["NOUN", "NOUN", "VERB"]]
    preds = [["NOUN", "ADJ", "VERB"]]
    # gold runs: NOUN(0-1), VERB(2) -> 2; pred: NOUN(0), ADJ(1), VERB(2) -> 3; TP = 1 (VERB)
    # P = 1/3, R = 1/2, F1 = 2*(1/6)/(5/6) = 2/5; accuracy 2/3
    out = seqeval_metrics(preds, refs)
    assert out["precision"] == pytest.approx(100 / 3)
    assert out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(40.0)
    assert out["accuracy"] == pytest.approx(200 / 3)


def test_pos_tags_starting_with_real_prefix_letters():
    # "SCONJ": prefix "S" (singleton), type "CONJ"; "CCONJ": prefix "C", type "CONJ" -> same type.
    # In CCONJ SCONJ the CCONJ chunk is never closed and is lost; SCONJ SCONJ gives two singletons.
    assert _entities(["CCONJ", "SCONJ"]) == [("CONJ", 1, 1)]
    assert _entities(["SCONJ", "SCONJ"]) == [("CONJ", 0, 0), ("CONJ", 1, 1)]
    # gold SCONJ SCONJ -> {(0,0), (1,1)}; pred CCONJ SCONJ -> {(1,1)}: TP 1, P = 1, R = 1/2, F1 = 2/3
    # (the wrong CCONJ at position 0 costs only recall); token accuracy 1/2
    out = seqeval_metrics([["CCONJ", "SCONJ"]], [["SCONJ", "SCONJ"]])
    assert out["precision"] == pytest.approx(100.0)
    assert out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(200 / 3)
    assert out["accuracy"] == pytest.approx(50.0)


def test_sentence_final_X_is_invisible_by_default_and_fixed_by_legacy_types():
    # predicting X on a sentence-final token is never counted as a predicted span in seqeval 1.x:
    # pred spans {NOUN(0)}; gold {NOUN(0), VERB(1)} -> TP 1, P = 1/1, R = 1/2, F1 = 2/3; accuracy 1/2
    out = seqeval_metrics([["NOUN", "X"]], [["NOUN", "VERB"]])
    assert out["precision"] == pytest.approx(100.0)
    assert out["recall"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(200 / 3)
    # legacy types ("X" -> "X-X", type "X"): pred {NOUN(0), X(1)}, gold {NOUN(0), VERB(1)} -> P = R = F1 = 1/2
    out = seqeval_metrics([["NOUN", "X"]], [["NOUN", "VERB"]], legacy_types=True)
    assert out == {"f1": pytest.approx(50.0), "precision": pytest.approx(50.0), "recall": pytest.approx(50.0),
                   "accuracy": pytest.approx(50.0)}


def test_cross_sentence_X_default_vs_legacy():
    preds = [["NOUN", "X"], ["X", "VERB"]]
    refs = [["NOUN", "X"], ["NOUN", "VERB"]]
    # default: pred spans {OUN(0,0), _(1,3) [X run glued across the boundary], ERB(4,4)};
    #   gold (flattened NOUN X O NOUN VERB): the X at 1 is never closed -> {OUN(0,0), OUN(3,3), ERB(4,4)}
    #   TP 2 of 3 and 3 -> P = R = F1 = 2/3
    out = seqeval_metrics(preds, refs)
    assert out["f1"] == pytest.approx(200 / 3)
    assert out["precision"] == pytest.approx(200 / 3)
    # legacy: pred {NOUN(0), X(1), X(3), VERB(4)}, gold {NOUN(0), X(1), NOUN(3), VERB(4)} -> 3/4 each
    out = seqeval_metrics(preds, refs, legacy_types=True)
    assert out["f1"] == pytest.approx(75.0)
    assert out["accuracy"] == pytest.approx(75.0)  # 3 of 4 tokens


def test_legacy_types_separate_cconj_and_sconj_and_keep_bio_unchanged():
    # legacy: pred CCONJ(0), SCONJ(1); gold SCONJ(0), SCONJ(1) -> TP 1, P = R = F1 = 1/2
    # (default seqeval gives P 1, R 1/2, see test_pos_tags_starting_with_real_prefix_letters)
    out = seqeval_metrics([["CCONJ", "SCONJ"]], [["SCONJ", "SCONJ"]], legacy_types=True)
    assert out["precision"] == pytest.approx(50.0)
    assert out["recall"] == pytest.approx(50.0)
    # ordinary runs behave as by default: same numbers as test_pos_f1_is_span_f1_over_runs_not_token_accuracy
    out = seqeval_metrics([["NOUN", "VERB", "VERB", "DET", "NOUN"]], [["NOUN", "NOUN", "VERB", "DET", "NOUN"]],
                          legacy_types=True)
    assert out["f1"] == pytest.approx(50.0)
    # BIO tags untouched: same as test_bio_partial_spans_precision_differs_from_recall
    refs = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    preds = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "O", "O"]]
    assert seqeval_metrics(preds, refs, legacy_types=True) == seqeval_metrics(preds, refs)


def test_no_prefix_warnings_are_silenced(recwarn):
    seqeval_metrics([["NOUN", "VERB"]], [["NOUN", "VERB"]])
    assert not [w for w in recwarn if "seems not to be NE tag" in str(w.message)]


def test_all_outside_gives_zero_f1_full_accuracy():
    # no gold and no predicted spans: seqeval defines P = R = F1 = 0; tokens all correct
    out = seqeval_metrics([["O", "O"]], [["O", "O"]])
    assert out == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "accuracy": 100.0}


def test_length_mismatch_names_sentence():
    with pytest.raises(ValueError, match="sentence 1 has 1 predicted tags but 2 reference tags"):
        seqeval_metrics([["O"], ["O"]], [["O"], ["O", "B-PER"]])


def test_sentence_count_mismatch_and_empty():
    with pytest.raises(ValueError, match="2 predicted sentences but 1 reference"):
        seqeval_metrics([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="empty"):
        seqeval_metrics([], [])
    with pytest.raises(ValueError, match="empty"):
        seqeval_metrics([[]], [[]])
