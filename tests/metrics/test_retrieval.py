import numpy as np
import pytest

from xgrid.metrics import (
    accuracy_at_1,
    bucc_f1,
    bucc_mine,
    bucc_optimal_threshold,
    cls_pool,
    margin_scores,
    mean_average_precision_at_k,
    mean_pool,
)
from xgrid.metrics.retrieval import knn_cosine

# ------------------------------------------------------------------------------------------ Tatoeba


def test_accuracy_at_1_uses_cosine_not_dot_product():
    src = np.array([[1.0, 0.0], [0.0, 1.0]])
    tgt = np.array([[1.0, 0.2], [10.0, 10.0]])
    # s0: cos(t0) = 1/sqrt(1.04) = 0.981, cos(t1) = 0.707 -> t0 (correct); the dot product would pick t1 (10 > 1)
    # s1: cos(t0) = 0.2/sqrt(1.04) = 0.196, cos(t1) = 0.707 -> t1 (correct)  => 2/2
    assert accuracy_at_1(src, tgt) == {"accuracy": pytest.approx(100.0)}


def test_accuracy_at_1_partial():
    src = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tgt = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    # s0 -> t1 (wrong), s1 -> t0 (wrong), s2 -> t2 (cos 1, right) => 1/3
    assert accuracy_at_1(src, tgt)["accuracy"] == pytest.approx(100 / 3)


def test_accuracy_at_1_tie_goes_to_lowest_index_and_distractors_allowed():
    src = np.array([[1.0, 1.0], [0.0, 1.0]])
    tgt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # s0 ties t0 and t1 (cos 0.707 each) -> t0 (right); s1 -> t1 (right); t2 is an extra distractor
    assert accuracy_at_1(src, tgt)["accuracy"] == pytest.approx(100.0)
    # with the tie resolved to index 0, a source whose answer is index 1 fails
    assert accuracy_at_1(np.array([[0.0, 1.0], [1.0, 1.0]]), tgt[:2])["accuracy"] == pytest.approx(0.0)


def test_accuracy_at_1_errors():
    with pytest.raises(ValueError, match="fewer"):
        accuracy_at_1(np.eye(3), np.eye(3)[:2])
    with pytest.raises(ValueError, match="all zeros"):
        accuracy_at_1(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]))


# ------------------------------------------------------------------------------------------ margin

X = np.array([[1.0, 0.0], [0.0, 1.0]])
Y = np.array([[1.0, 0.0], [0.6, 0.8]])
# cosines: x0.y0 = 1, x0.y1 = 0.6, x1.y0 = 0, x1.y1 = 0.8


def test_margin_scores_k1():
    # k = 1: mean NN sim of x0 = 1, x1 = 0.8; of y0 = max(1, 0) = 1, y1 = max(0.6, 0.8) = 0.8
    # s00 = 1 / ((1 + 1)/2) = 1; s01 = 0.6 / ((1 + 0.8)/2) = 2/3; s10 = 0; s11 = 0.8 / ((0.8 + 0.8)/2) = 1
    expected = np.array([[1.0, 2 / 3], [0.0, 1.0]])
    np.testing.assert_allclose(margin_scores(X, Y, k=1), expected, atol=1e-12)


def test_margin_scores_k2_and_k_clipped():
    # k = 2 (everything): x0: (1 + 0.6)/2 = 0.8, x1: (0 + 0.8)/2 = 0.4; y0: (1 + 0)/2 = 0.5, y1: (0.6 + 0.8)/2 = 0.7
    # equivalently sum/(2k): x0 1.6/4 = 0.4 and y0 1/4 = 0.25 -> 0.65 = (0.8 + 0.5)/2
    # s00 = 1/0.65; s01 = 0.6/((0.8 + 0.7)/2) = 0.8; s10 = 0; s11 = 0.8/((0.4 + 0.7)/2) = 0.8/0.55
    expected = np.array([[1 / 0.65, 0.8], [0.0, 0.8 / 0.55]])
    np.testing.assert_allclose(margin_scores(X, Y, k=2), expected, atol=1e-12)
    # k larger than the other side is clipped to it, as in the official script
    np.testing.assert_allclose(margin_scores(X, Y, k=4), expected, atol=1e-12)
    # scale invariance (cosine)
    np.testing.assert_allclose(margin_scores(3 * X, 0.5 * Y, k=2), expected, atol=1e-12)


def test_knn_cosine_sorted_with_ties_by_index():
    sims, inds = knn_cosine(np.array([[1.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), k=3)
    # cos to rows: 0.707, 0.707, 1 -> order 2, then the tie 0, 1
    assert inds.tolist() == [[2, 0, 1]]
    np.testing.assert_allclose(sims, [[1.0, 2**-0.5, 2**-0.5]])


# ------------------------------------------------------------------------------------------ BUCC


def test_bucc_mine_k2():
    # forward (k=2, scores from test_margin_scores_k2): x0 -> y0 (1/0.65 > 0.8), x1 -> y1 (0.8/0.55 > 0)
    # backward: y0 -> x0 (1/0.65 > 0), y1 -> x1 (0.8/0.55 > 0.8); duplicates collapse one-to-one
    out = bucc_mine(X, ["s0", "s1"], Y, ["t0", "t1"], k=2)
    assert [(s, t) for _, s, t in out] == [("s0", "t0"), ("s1", "t1")]
    assert [score for score, _, _ in out] == pytest.approx([1 / 0.65, 0.8 / 0.55])


def test_bucc_mine_is_one_to_one():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    # k = 1: fwd means x0 1, x1 1, x2 0.8; bwd means y0 max(1, 0, 0.8) = 1, y1 max(0, 1, 0.6) = 1
    # fwd best: x0->y0 1/1 = 1; x1->y1 1; x2->y0 0.8/((0.8 + 1)/2) = 0.889; bwd: y0->x0 1, y1->x1 1
    # greedy by score: (x0,y0), (x1,y1); (x2,y0) is dropped because y0 is taken
    out = bucc_mine(x, ["a", "b", "c"], y, ["A", "B"], k=1)
    assert out == [(pytest.approx(1.0), "a", "A"), (pytest.approx(1.0), "b", "B")]


def test_bucc_mine_id_mismatch():
    with pytest.raises(ValueError, match="ids/embeddings mismatch"):
        bucc_mine(X, ["s0"], Y, ["t0", "t1"])


SAMPLE = [
    (0.9, "a", "A"),  # correct
    (0.8, "b", "B"),  # correct
    (0.7, "c", "X"),
    (0.6, "d", "D"),  # correct
    (0.5, "e", "Y"),
    (0.4, "f", "Z"),
]
SAMPLE_GOLD = {("a", "A"), ("b", "B"), ("d", "D"), ("g", "G")}  # ("g", "G") was never mined


def test_bucc_optimal_threshold_known_optimum():
    # top-i F1 with 4 gold pairs: i=1: P 1, R 1/4 -> 0.4; i=2: P 1, R 1/2 -> 2/3; i=3: P 2/3, R 1/2 -> 4/7
    # i=4: P 3/4, R 3/4 -> 0.75 (best); i=5: P 3/5, R 3/4 -> 2/3; i=6: P 1/2, R 3/4 -> 0.6
    # threshold halfway between the 4th (0.6) and 5th (0.5) scores = 0.55
    th = bucc_optimal_threshold(SAMPLE, SAMPLE_GOLD)
    assert th == pytest.approx(0.55)
    # on the same split, keeping score >= 0.55 reproduces the optimum: P = R = F1 = 3/4
    assert bucc_f1(SAMPLE, SAMPLE_GOLD, th) == {
        "precision": pytest.approx(75.0),
        "recall": pytest.approx(75.0),
        "f1": pytest.approx(75.0),
    }


def test_bucc_f1_on_test_split_with_tuned_threshold():
    test = [(0.95, "p", "P"), (0.56, "q", "Q"), (0.55, "r", "R"), (0.54, "s", "S")]
    gold = {("p", "P"), ("r", "R"), ("s", "S")}
    # threshold 0.55 keeps p, q, r (>= is inclusive); correct p, r -> P = 2/3, R = 2/3, F1 = 2/3
    out = bucc_f1(test, gold, 0.55)
    assert out["precision"] == pytest.approx(200 / 3)
    assert out["recall"] == pytest.approx(200 / 3)
    assert out["f1"] == pytest.approx(200 / 3)


def test_bucc_threshold_edge_cases():
    # best F1 at the last candidate: the official script would index past the end; we use its own score
    assert bucc_optimal_threshold([(0.9, "a", "A"), (0.3, "b", "B")], {("a", "A"), ("b", "B")}) == pytest.approx(0.3)
    # nothing correct: threshold stays 0 and F1 is 0
    assert bucc_optimal_threshold([(0.9, "a", "B")], {("a", "A")}) == 0.0
    assert bucc_f1([(0.9, "a", "B")], {("a", "A")}, 0.0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    # duplicate pairs keep their max score: (a, A) has 0.7 >= 0.5 -> extracted, 1/1 correct
    assert bucc_f1([(0.2, "a", "A"), (0.7, "a", "A")], {("a", "A")}, 0.5)["f1"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="gold_pairs is empty"):
        bucc_f1(SAMPLE, set(), 0.5)


def test_bucc_end_to_end_mine_tune_apply():
    # two languages' embeddings of 3 parallel sentences (+ noise); the gold pairs are (i, i)
    src = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 1.0]])
    trg = np.array([[0.9, 0.0, 0.1], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9]])
    ids_s, ids_t = ["s0", "s1", "s2"], ["t0", "t1", "t2"]
    cands = bucc_mine(src, ids_s, trg, ids_t, k=2)
    gold = {("s0", "t0"), ("s1", "t1"), ("s2", "t2")}
    assert {(s, t) for _, s, t in cands} == gold
    th = bucc_optimal_threshold(cands, gold)
    # all three candidates are correct: best F1 at the last one -> threshold = lowest score
    assert th == pytest.approx(min(c[0] for c in cands))
    assert bucc_f1(cands, gold, th)["f1"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------------ mAP@k


def test_map_at_k_relevant_beyond_k():
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],  # ranking 0 1 2 3 4
            [0.1, 0.9, 0.8, 0.7, 0.2],  # ranking 1 2 3 4 0
        ]
    )
    relevant = [{0, 2}, {2, 0}]
    # q0, k=3: hits at rank 1 (1/1) and rank 3 (2/3) -> (5/3) / min(3, 2) = 5/6
    # q1, k=3: top-3 = 1, 2, 3: hit at rank 2 (1/2); item 0 is at rank 5 > k -> (1/2) / 2 = 1/4
    # mAP = (5/6 + 1/4) / 2 = 13/24 -> 54.1666...
    out = mean_average_precision_at_k(scores, relevant, k=3)
    assert out == {"map@3": pytest.approx(1300 / 24)}


def test_map_at_k_divisor_is_min_k_relevant_and_default_key():
    # 4 relevant, k = 2: top-2 both relevant -> (1/1 + 2/2) / min(2, 4) = 1 -> 100
    assert mean_average_precision_at_k(np.array([[4.0, 3.0, 2.0, 1.0]]), [{0, 1, 2, 3}], k=2) == {
        "map@2": pytest.approx(100.0)
    }
    # default k = 20 > n_candidates: one relevant item at rank 3 -> (1/3)/1 -> 33.33
    out = mean_average_precision_at_k(np.array([[3.0, 2.0, 1.0]]), [{2}])
    assert out == {"map@20": pytest.approx(100 / 3)}


def test_map_at_k_ties_broken_by_lower_index():
    scores = np.array([[0.5, 0.5, 0.1]])
    # tie between 0 and 1: candidate 0 is ranked first
    assert mean_average_precision_at_k(scores, [{0}], k=1)["map@1"] == pytest.approx(100.0)
    assert mean_average_precision_at_k(scores, [{1}], k=1)["map@1"] == pytest.approx(0.0)
    # k = 2: candidate 1 at rank 2 -> (1/2)/1 -> 50
    assert mean_average_precision_at_k(scores, [{1}], k=2)["map@2"] == pytest.approx(50.0)


def test_map_at_k_errors():
    with pytest.raises(ValueError, match="no relevant"):
        mean_average_precision_at_k(np.zeros((1, 3)), [set()])
    with pytest.raises(ValueError, match="out of range"):
        mean_average_precision_at_k(np.zeros((1, 3)), [{3}])
    with pytest.raises(ValueError, match="2 relevant sets for 1 queries"):
        mean_average_precision_at_k(np.zeros((1, 3)), [{0}, {1}])


# ------------------------------------------------------------------------------------------ pooling


def test_mean_pool_ignores_padding():
    hidden = np.array(
        [
            [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
            [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]],
        ]
    )
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    # row 0: ([1,2] + [3,4]) / 2 = [2, 3] (the padded [100,100] is ignored); row 1: [6,6]/3 = [2, 2]
    np.testing.assert_allclose(mean_pool(hidden, mask), [[2.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(cls_pool(hidden, mask), [[1.0, 2.0], [0.0, 0.0]])


def test_mean_pool_errors():
    with pytest.raises(ValueError, match="row 1 is all zeros"):
        mean_pool(np.ones((2, 2, 3)), np.array([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match="expected hidden"):
        mean_pool(np.ones((2, 3)), np.ones((2, 3)))


# ------------------------------------------------------------------------------------------ consistency


def test_chunked_paths_match_dense_computation(monkeypatch):
    import xgrid.metrics.retrieval as retrieval

    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=(6, 3))
    dense = margin_scores(x, y, k=2)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    brute_acc = 100.0 * np.mean((xn[:6] @ yn.T).argmax(axis=1) == np.arange(6))
    mined = bucc_mine(x, list(range(7)), y, list(range(6)), k=2)
    # force one row per block (6 // 6 = 1): results must not depend on the block size
    monkeypatch.setattr(retrieval, "_BLOCK_ELEMS", 6)
    np.testing.assert_allclose(margin_scores(x, y, k=2), dense)
    assert accuracy_at_1(x[:6], y)["accuracy"] == pytest.approx(brute_acc)
    assert bucc_mine(x, list(range(7)), y, list(range(6)), k=2) == mined
    # every mined score is the dense margin score of that pair, and ids are used at most once
    for score, i, j in mined:
        assert score == pytest.approx(dense[i, j])
    assert len({i for _, i, _ in mined}) == len(mined) == len({j for _, _, j in mined})


def test_float32_embeddings_accepted():
    x = np.eye(3, dtype=np.float32)
    assert accuracy_at_1(x, x)["accuracy"] == pytest.approx(100.0)
    assert [(s, t) for _, s, t in bucc_mine(x, "abc", x, "ABC", k=2)] == [("a", "A"), ("b", "B"), ("c", "C")]
