"""A stage-2 trial's report reaches Tune packed: the epoch and selection scores as numbers (what the searcher
and the schedulers act on), every metric in one string, unpacked unchanged for xgrid's records."""

from __future__ import annotations

import math

from xgrid.search.tune_metrics import PACKED, packed, unpacked

REPORT = {"epoch": 2, "select.english_dev": 71.25, "select.target_dev": 70.0, "train_loss": 0.4321,
          "dev.f1.en": 71.25, "dev.f1.xa": float("nan"), "f1.xb": 1 / 3, "seconds": 1.5}


def test_tune_gets_only_what_it_acts_on_as_numbers():
    result = packed(REPORT)
    numbers = {k for k, v in result.items() if isinstance(v, (int, float))}
    assert numbers == {"epoch", "select.english_dev", "select.target_dev", "seconds"}
    assert isinstance(result[PACKED], str)


def test_unpacking_gives_every_metric_back_bit_for_bit_with_tunes_own():
    # Tune adds its own figures to every result (the trial's wall time, iteration, pid ...): they stay.
    result = packed(REPORT) | {"time_total_s": 3.5, "training_iteration": 2, "done": False, "node_ip": "127.0.0.1"}
    metrics = unpacked(result)
    assert set(metrics) == set(REPORT) | {"time_total_s", "training_iteration"}
    for name, value in REPORT.items():
        assert (math.isnan(metrics[name]) if math.isnan(value) else metrics[name] == value), name
        assert type(metrics[name]) is type(value), name
    assert metrics["time_total_s"] == 3.5


def test_a_result_that_was_not_packed_gives_its_numbers():
    assert unpacked({"epoch": 1, "score": 0.5, "done": True, "note": "x"}) == {"epoch": 1, "score": 0.5}
