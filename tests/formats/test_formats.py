"""Each format's featurize and score are inverses: outputs that put all mass on the featurized gold labels must
score 100, and outputs that put it elsewhere must not. This checks label alignment (first sub-word of each
word, QA character offsets through sliding windows) without any training."""

import numpy as np
import pytest
import torch

from xgrid.formats import get_format
from xgrid.models.loading import load_encoder, load_tokenizer
from xgrid.tasks import LoadContext
from xgrid.training.data import featurize, load_split

LOAD = LoadContext()


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(tiny_model)


def split_of(registry, tokenizer, name, language="en", role="dev", n=40, max_length=64):
    task = registry.get(name)
    return task, featurize(task, load_split(task, language, role, LOAD, n), tokenizer, max_length, training=False)


def batches(rows, size=16):
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def one_hot(index, width):
    out = np.full(width, -10.0, dtype=np.float32)
    out[index] = 10.0
    return out


@pytest.mark.parametrize("name,metric", [("mb_xnli", "accuracy"), ("mb_para", "accuracy")])
def test_classification_perfect_and_wrong(registry, tokenizer, name, metric):
    task, split = split_of(registry, tokenizer, name)
    fmt = get_format(task.format)
    width = fmt.num_outputs(task, split.examples)
    perfect = [np.stack([one_hot(r["labels"], width) for r in b]) for b in batches(split.rows)]
    wrong = [np.stack([one_hot((r["labels"] + 1) % width, width) for r in b]) for b in batches(split.rows)]
    assert fmt.score(perfect, split.features, split.examples, task, "en")[metric] == 100.0
    assert fmt.score(wrong, split.features, split.examples, task, "en")[metric] == 0.0


@pytest.mark.parametrize("name,language", [("mb_udpos", "en"), ("mb_udpos", "xc"), ("mb_chunk", "en")])
def test_tagging_labels_sit_on_first_subwords(registry, tokenizer, name, language):
    task, split = split_of(registry, tokenizer, name, language)
    fmt = get_format(task.format)
    width = fmt.num_outputs(task, split.examples)
    tags_column = task.option("tags", "pos_tags")  # the tagging format's default column
    for row, example in zip(split.rows, split.examples):
        labelled = [label for label in row["labels"] if label != -100]
        assert labelled == list(example[tags_column])  # one label per word, in order
    perfect = [np.stack(pad([np.stack([one_hot(max(l, 0), width) for l in r["labels"]]) for r in b]))
               for b in batches(split.rows)]
    assert fmt.score(perfect, split.features, split.examples, task, language)["f1"] == 100.0
    shifted = [np.stack(pad([np.stack([one_hot((max(l, 0) + 1) % width, width) for l in r["labels"]]) for r in b]))
               for b in batches(split.rows)]
    assert fmt.score(shifted, split.features, split.examples, task, language)["f1"] < 50.0


def pad(arrays):
    width = max(a.shape[0] for a in arrays)
    return [np.concatenate([a, np.zeros((width - a.shape[0], a.shape[1]), a.dtype)]) for a in arrays]


@pytest.mark.parametrize("max_length", [64, 32])  # 32 forces several windows per context
def test_span_qa_gold_positions_decode_to_the_gold_text(registry, tokenizer, max_length):
    task = registry.get("mb_xquad")
    examples = load_split(task, "xb", "test", LOAD, 30)
    fmt = get_format(task.format)
    features = fmt.featurize(examples, tokenizer, task, max_length, training=False)
    rows = features.to_list()
    if max_length == 32:
        assert len(rows) > len(examples)  # sliding windows happened
    outputs = []
    for b in batches(rows):
        width = max(len(r["input_ids"]) for r in b)
        logits = np.full((len(b), width, 2), -10.0, dtype=np.float32)
        for i, r in enumerate(b):
            if r["start_positions"] or r["end_positions"]:  # the window holds the answer
                logits[i, r["start_positions"], 0] = logits[i, r["end_positions"], 1] = 10.0
        outputs.append(logits)
    located = {r["example_id"] for r in rows if r["start_positions"] or r["end_positions"]}
    if max_length == 64:
        assert len(located) == len(examples)  # every answer fits in a window
    # Decoding is exact wherever the featurizer located the answer; an answer that straddles two short
    # windows is in neither (its examples score 0 here, by construction of the windows, not of decoding).
    expected = 100.0 * len(located) / len(examples)
    assert fmt.score(outputs, features, examples, task, "xb") == {"exact_match": pytest.approx(expected),
                                                                  "f1": pytest.approx(expected),
                                                                  "em_f1": pytest.approx(expected)}
    assert expected > 50.0


def test_multiple_choice_perfect_and_shapes(registry, tokenizer):
    task, split = split_of(registry, tokenizer, "mb_choice")
    fmt = get_format(task.format)
    batch = fmt.collate(split.rows[:4], tokenizer.pad_token_id)
    assert batch["input_ids"].shape[:2] == (4, 4) and batch["labels"].shape == (4,)
    perfect = [np.stack([one_hot(r["labels"], 4) for r in b]) for b in batches(split.rows)]
    assert fmt.score(perfect, split.features, split.examples, task, "en")["accuracy"] == 100.0


def test_heads_produce_the_shapes_their_losses_expect(registry, tokenizer, tiny_model):
    encoder = load_encoder(tiny_model)
    for name in ("mb_xnli", "mb_udpos", "mb_xquad", "mb_choice"):
        task, split = split_of(registry, tokenizer, name, role="dev", n=6)
        fmt = get_format(task.format)
        head = fmt.build_head(encoder.config.hidden_size, fmt.num_outputs(task, split.examples))
        batch = fmt.collate(split.rows, tokenizer.pad_token_id)
        loss = fmt.loss(fmt.forward(encoder, head, batch), batch)
        assert loss.ndim == 0 and torch.isfinite(loss), name
        loss.backward()


def test_span_qa_says_when_max_length_leaves_no_room_for_the_context(registry, tokenizer):
    task = registry.get("mb_xquad")
    examples = load_split(task, "en", "dev", LOAD, 5)
    with pytest.raises(ValueError, match="leaves no room for the context"):
        get_format(task.format).featurize(examples, tokenizer, task, 12, training=False)
