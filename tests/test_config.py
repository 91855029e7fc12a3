"""The learning-rate forms own what the search does with them: their Optuna distribution, the trials enqueued
per cell, and the one value a plain run uses. A bare number stays a bare number in the resolved space."""

import optuna.distributions as d
import pytest

from xgrid.config import Choices, FixedRate, LogRange, parse_space

BASE = {"name": "lr", "base_models": [{"name": "tiny"}], "intermediates": ["none"], "targets": ["mb_udpos"],
        "seeds": [0]}


def rate(registry, value):
    return parse_space(BASE | {"target_training": {"learning_rate": value}}, registry).target_training


def test_a_fixed_rate(registry):
    training = rate(registry, 0.002)
    lr = training.learning_rate
    assert isinstance(lr, FixedRate) and not training.searched
    assert lr.optuna_distribution() == d.CategoricalDistribution([0.002])
    assert lr.enqueued_points(["a", "b"], 3) == [{"cell": "a", "learning_rate": 0.002},
                                                 {"cell": "b", "learning_rate": 0.002}]
    assert lr.fixed_value() == 0.002
    assert training.model_dump(mode="json")["learning_rate"] == 0.002


def test_a_range(registry):
    training = rate(registry, {"low": 1e-4, "high": 1e-2})
    lr = training.learning_rate
    assert isinstance(lr, LogRange) and training.searched
    assert lr.optuna_distribution() == d.FloatDistribution(1e-4, 1e-2, log=True)
    assert lr.enqueued_points(["a"], 2) == [{"cell": "a"}, {"cell": "a"}]  # the sampler picks the rate
    assert lr.fixed_value() == pytest.approx(1e-3)


@pytest.mark.parametrize("trials, expected", [
    (4, [0.001, 0.003, 0.001, 0.003]),  # every value for every cell, in order
    (1, None),  # fewer trials than values: the sampler chooses
])
def test_choices(registry, trials, expected):
    lr = rate(registry, {"values": [0.003, 0.001]}).learning_rate
    assert isinstance(lr, Choices)
    assert lr.optuna_distribution() == d.CategoricalDistribution([0.001, 0.003])
    points = lr.enqueued_points(["a"], trials)
    assert len(points) == trials
    assert [p.get("learning_rate") for p in points] == (expected or [None] * trials)
    assert lr.fixed_value() == 0.003


def test_resource_overrides_are_validated_again(registry):
    space = parse_space(BASE | {"target_training": {"learning_rate": 0.001}}, registry)
    assert space.with_resources({"max_concurrent_trials": 3, "workers_per_trial": None}).resources.max_concurrent_trials == 3
    assert space.with_resources({}) is space
    with pytest.raises(ValueError, match="inline runs one CPU worker"):
        space.with_resources({"trial_backend": "inline", "workers_per_trial": 2})
