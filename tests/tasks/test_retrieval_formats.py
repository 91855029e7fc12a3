"""Retrieval protocols: BUCC's threshold comes from the dev split and is applied to test, chunked mAP@k equals the
dense definition, sentence splitting for LAReQA's pool, and the format dispatch."""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np
import pytest

from xgrid.formats import FORMATS, ScoredFormat, TrainedFormat, get_format, retrieval
from xgrid.formats.retrieval import RetrievalSettings, map_at_k_chunked, split_sentences
from xgrid.metrics.retrieval import bucc_f1, bucc_mine, bucc_optimal_threshold, mean_average_precision_at_k
from xgrid.tasks import LoadContext, default_registry

REGISTRY = default_registry()
COLUMNS = ("source_sentence", "target_sentence", "source_lang", "target_lang")


def _bucc_rows(pairs, unpaired_source=(), unpaired_target=()):
    rows = [(f"s{s}", f"t{t}", f"de-{s}", f"en-{t}") for s, t in pairs]
    rows += [(f"s{s}", "", f"de-{s}", "") for s in unpaired_source]
    rows += [("", f"t{t}", "", f"en-{t}") for t in unpaired_target]
    return datasets.Dataset.from_dict({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})


class _Source:
    def __init__(self, dev):
        self.dev = dev

    def load(self, task, language, role, ctx):
        assert role == "dev"
        return self.dev


def test_bucc_threshold_is_tuned_on_dev_and_applied_to_test(monkeypatch):
    rng = np.random.default_rng(0)
    vectors = {}

    def fake_embed(encoder, tokenizer, texts, settings, device="cpu", texts_b=None):
        # s<i> and t<i> are near each other (parallel); every sentence gets its own direction otherwise.
        out = []
        for text in texts:
            base = vectors.setdefault(text[1:], rng.normal(size=16))
            out.append(base + 0.05 * rng.normal(size=16))
        return np.stack(out)

    monkeypatch.setattr(retrieval, "embed", fake_embed)
    dev = _bucc_rows([(1, 1), (2, 2), (3, 3)], unpaired_source=[4, 5], unpaired_target=[6])
    test = _bucc_rows([(10, 10), (11, 11)], unpaired_source=[12], unpaired_target=[13, 14])
    task = dataclasses.replace(REGISTRY.get("bucc2018"), source=_Source(dev))
    result = get_format(task.format).evaluate_encoder(None, None, test, task, "de", RetrievalSettings(),
                                                      load=LoadContext())
    # Recompute by hand with the same embeddings: threshold from dev, F1 on test at that threshold.
    rng = np.random.default_rng(0)
    vectors.clear()
    mine = retrieval.BitextMining()._mine
    dev_candidates, dev_gold = mine(None, None, dev, task, RetrievalSettings(), "cpu")
    threshold = bucc_optimal_threshold(dev_candidates, dev_gold)
    test_candidates, test_gold = mine(None, None, test, task, RetrievalSettings(), "cpu")
    assert result["threshold"] == pytest.approx(threshold)
    assert result["f1"] == pytest.approx(bucc_f1(test_candidates, test_gold, threshold)["f1"])
    assert test_gold == {("de-10", "en-10"), ("de-11", "en-11")}
    with pytest.raises(ValueError, match="LoadContext"):
        get_format(task.format).evaluate_encoder(None, None, test, task, "de", RetrievalSettings())


def test_chunked_map_equals_the_dense_definition():
    rng = np.random.default_rng(1)
    queries, candidates = rng.normal(size=(23, 8)), rng.normal(size=(300, 8))
    relevant = [set(rng.choice(300, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(23)]
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    dense = mean_average_precision_at_k(qn @ cn.T, relevant, k=20)
    for max_elems in (300, 3000, 1 << 24):  # 1 query per chunk, several, all at once
        assert map_at_k_chunked(queries, candidates, relevant, 20, max_elems=max_elems) == pytest.approx(dense)
    # ties at the cut-off keep the lower index first, as the dense metric does
    tied = np.ones((5, 8))
    assert map_at_k_chunked(np.ones((2, 8)), tied, [{4}, {0}], 2, max_elems=5) == pytest.approx(
        mean_average_precision_at_k(np.ones((2, 5)), [{4}, {0}], 2))


def test_sentence_splitting_for_the_lareqa_pool():
    text = 'The capital is Paris. "It is big." Is it? 北京是首都。上海很大。'
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == ["The capital is Paris.", '"It is big."', "Is it?", "北京是首都。", "上海很大。"]
    assert split_sentences("no end mark") == [(0, 11)]


def test_unknown_format_is_rejected_naming_the_known_ones():
    task = dataclasses.replace(REGISTRY.get("tatoeba"), format="nope")
    with pytest.raises(ValueError, match="unknown format 'nope'; known: ") as err:
        REGISTRY.trains(task)
    assert all(repr(name) in str(err.value) for name in FORMATS)


def test_each_retrieval_protocol_is_a_scored_format_and_every_other_format_trains():
    retrieval_formats = {"retrieval", "bitext_mining", "answer_retrieval", "entity_retrieval"}
    assert {t.format for t in REGISTRY if t.group == "retrieval"} == retrieval_formats
    for name, fmt in FORMATS.items():
        if name in retrieval_formats:
            assert isinstance(fmt, ScoredFormat) and fmt.trains is False, name
        else:
            assert isinstance(fmt, TrainedFormat) and fmt.trains is True, name
    # The protocol is the format: no task option picks one.
    assert not any({"mode", "pool"} & set(t.options) for t in REGISTRY if t.group == "retrieval")


def test_bucc_mine_is_the_metric_modules():
    assert retrieval.bucc_mine is bucc_mine  # the format mines with xgrid.metrics.retrieval, nothing of its own
