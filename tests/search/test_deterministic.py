"""`search.deterministic: true`: trials of a target run one at a time, so the sampler and the scheduler see results
in the order they were asked for; with every trial's training seeded (`xgrid.training.phase.seed_everything`, the
data loader's seeded generator, heads built after a reseed, a fixed thread count per trial), a rerun of the same
space repeats every sampled learning rate, every early-stopping decision and every score."""

from __future__ import annotations

import pytest

from xgrid import tracking_schema as schema
from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.search import stage2
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search

SPACE = {
    "name": "det",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 32, "max_train_examples": 120,
                              "max_eval_examples": 30},
    # A range: Optuna samples every rate, so a rerun that repeats them shows the sampler saw the same history.
    # The top of the range is hopeless, so ASHA's decisions are part of what must repeat.
    "target_training": {"learning_rate": {"low": 1e-3, "high": 0.5}, "epochs": 2, "max_length": 32,
                        "max_train_examples": 80, "max_eval_examples": 30},
    "search": {"trials_per_cell": 3, "scheduler": "asha", "grace_period": 1, "deterministic": True,
               "sampler_seed": 11},
    "resources": {"max_concurrent_trials": 2},
}


def deterministic_plan(registry, **search):
    space = parse_space(SPACE | {"search": SPACE["search"] | search}, registry)
    return build_plan(space, registry)


# --- the Tuner -------------------------------------------------------------------------------------------------
class _Tuner:
    """Stands in for tune.Tuner: keeps what `_tune` configured it with, runs nothing."""

    made: list["_Tuner"] = []

    def __init__(self, trainable, tune_config, run_config):
        self.tune_config, self.run_config = tune_config, run_config
        _Tuner.made.append(self)

    def fit(self):
        return None


@pytest.fixture
def tuner_config(monkeypatch, tmp_path):
    """The TuneConfig `_tune` builds for a plan's only target, with no Ray started."""
    monkeypatch.setattr(stage2.tune, "Tuner", _Tuner)
    monkeypatch.setattr(stage2.tune, "with_parameters", lambda trainable, **kwargs: lambda config: None)
    monkeypatch.setattr(stage2.tune, "with_resources", lambda trainable, resources: trainable)
    _Tuner.made.clear()

    def configured(plan):
        target = plan.space.targets[0]
        folder = tmp_path / str(len(_Tuner.made))
        folder.mkdir()
        stage2._tune(target, plan.cells_for(target), plan.space, {}, folder, str(folder / "ray"), None,
                     stage2.StopRequest(), [])
        return _Tuner.made[-1].tune_config

    return configured


def test_deterministic_runs_one_trial_at_a_time(registry, tuner_config):
    assert tuner_config(deterministic_plan(registry)).max_concurrent_trials == 1
    assert tuner_config(deterministic_plan(registry, deterministic=False)).max_concurrent_trials == 2


# --- two real searches -------------------------------------------------------------------------------------------
def outcome_of(records) -> dict[str, list[tuple]]:
    """Per cell, in the order the trials ran: (learning rate, status, every score). Wall times are left out: they
    are the only thing a rerun may change."""
    by_cell: dict[str, list[tuple]] = {}
    for record in records:
        scores = {k: v for k, v in record.metrics.items() if schema.is_xgrid_metric(k) and k != schema.SECONDS
                  and isinstance(v, (int, float))}
        by_cell.setdefault(record.cell.id, []).append((record.learning_rate, record.status, scores))
    return by_cell


@pytest.mark.slow  # two searches of their own, each with its own Ray and store (~1-2 min on 2 CPUs)
def test_two_runs_of_the_same_space_give_the_same_trials(registry, tmp_path):
    plan = deterministic_plan(registry)
    runs = []
    for name in ("first", "second"):  # separate stores: stage 1 is trained again too, not reused
        outcome = run_search(plan, SearchOptions(output_root=tmp_path / name, ray_init={"num_cpus": 2}))
        runs.append(outcome)
    first, second = (outcome_of(o.records["mb_udpos"]) for o in runs)
    assert runs[0].stage1_trained == runs[1].stage1_trained == 1
    assert len(first) == 2 and all(len(trials) == 3 for trials in first.values())
    rates = [rate for trials in first.values() for rate, _, _ in trials]
    assert len(set(rates)) == len(rates)  # sampled, not enqueued: repeating them is the sampler's doing
    assert all(scores for trials in first.values() for _, _, scores in trials)
    assert first == second
    assert [r["avg"] for r in runs[0].best] == [r["avg"] for r in runs[1].best]
