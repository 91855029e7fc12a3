"""QA metrics through the span_qa format end to end, on hand-made cases whose official scores are known: the span a
model picks is decoded from its logits and scored with the entry's metric variant (SQuAD's for XQuAD / TyDiQA,
MLQA's language-aware one for MLQA)."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from xgrid.formats import get_format
from xgrid.models.loading import load_tokenizer
from xgrid.tasks import default_registry

REGISTRY = default_registry()
ANSWERS = datasets.Sequence({"answer_start": datasets.Value("int32"), "text": datasets.Value("string")})
FEATURES = datasets.Features({"id": datasets.Value("string"), "title": datasets.Value("string"),
                              "context": datasets.Value("string"), "question": datasets.Value("string"),
                              "answers": ANSWERS})


def _rows(items):
    return datasets.Dataset.from_list([
        {"id": f"q{i}", "title": "", "context": c, "question": q,
         "answers": {"answer_start": [c.index(a)], "text": [a]}} for i, (c, q, a, _) in enumerate(items)], features=FEATURES)


def _score_picking(task, items, language, tokenizer):
    """Featurize, then give each example logits that pick exactly its `predicted` character span."""
    fmt = get_format(task.format)
    examples = _rows(items)
    features = fmt.featurize(examples, tokenizer, task, 64, training=False)
    width = max(len(ids) for ids in features["input_ids"])
    logits = np.zeros((len(features), width, 2), dtype=np.float32)
    for f, (example_id, offsets) in enumerate(zip(features["example_id"], features["offsets"])):
        context, _, _, predicted = items[int(example_id[1:])]
        start_char = context.index(predicted)
        end_char = start_char + len(predicted)
        tokens = [(i, o) for i, o in enumerate(offsets) if o is not None]
        start = next(i for i, o in tokens if o[1] > start_char)
        end = next(i for i, o in reversed(tokens) if o[0] < end_char)
        logits[f, start, 0] = logits[f, end, 1] = 10.0
    return fmt.score([logits], features, examples, task, language)


@pytest.fixture(scope="module")
def tokenizer(tiny_xlmr):
    return load_tokenizer(tiny_xlmr)


def test_squad_variant_for_xquad_and_tydiqa(tokenizer):
    items = [("Mount Everest lies in the Himalaya range.", "Where does it lie?", "Himalaya", "the Himalaya"),
             ("Water boils at 100 degrees, they say.", "When does water boil?", "100 degrees", "100 degrees,"),
             ("The dog slept in the garden today.", "Where did the dog sleep?", "in the garden", "garden")]
    # SQuAD v1.1: articles and punctuation removed -> EM 1, 1, 0; F1 1, 1, 2*(1/1*1/2)/(1+1/2) = 2/3.
    for name in ("xquad", "tydiqa"):
        scores = _score_picking(REGISTRY.get(name), items, "en", tokenizer)
        assert scores["exact_match"] == pytest.approx(200 / 3)
        assert scores["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
        # XTREME-R's QA score, the targets' primary metric: (EM + F1) / 2.
        assert scores["em_f1"] == pytest.approx((200 / 3 + 100 * (1 + 1 + 2 / 3) / 3) / 2)
        assert REGISTRY.get(name).metric == "em_f1"


def test_mlqa_variant_removes_the_language_s_articles(tokenizer):
    items = [("Der Hund schlief in dem Garten.", "Wo schlief der Hund?", "Garten", "dem Garten"),
             ("Die Katze heißt Mia.", "Wie heißt die Katze?", "Mia", "Mia")]
    mlqa, xquad = REGISTRY.get("mlqa"), REGISTRY.get("xquad")
    # MLQA (de): "dem" is a German article -> both exact. SQuAD's English-only rules keep it: F1 2/3 on the first.
    assert _score_picking(mlqa, items, "de", tokenizer) == {"exact_match": 100.0, "f1": 100.0, "em_f1": 100.0}
    squad_scores = _score_picking(xquad, items, "de", tokenizer)
    assert squad_scores["exact_match"] == pytest.approx(50.0)
    assert squad_scores["f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
