import numpy as np
import pytest

from xgrid.metrics import accuracy


def test_accuracy_ints():
    # matches at positions 0 and 2 of 4 -> 2/4 = 50%
    assert accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == {"accuracy": pytest.approx(50.0)}


def test_accuracy_string_labels():
    # 2 of 3 correct -> 200/3 = 66.666...
    out = accuracy(["entailment", "neutral", "neutral"], ["entailment", "neutral", "contradiction"])
    assert out["accuracy"] == pytest.approx(200 / 3)


def test_accuracy_numpy_arrays_all_and_none():
    assert accuracy(np.array([0, 1, 2]), np.array([0, 1, 2]))["accuracy"] == pytest.approx(100.0)
    assert accuracy(np.array([1, 2, 0]), np.array([0, 1, 2]))["accuracy"] == pytest.approx(0.0)


def test_accuracy_length_mismatch():
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        accuracy([0, 1, 1], [0, 1])


def test_accuracy_empty():
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
