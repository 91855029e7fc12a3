"""A base model's own settings and resources (`model_overrides`) reach everything downstream of the space: the
stage-1 keys, the cell ids, the trial counts, the dry run's cost and batch lines, the phase requests (their
learning rate and precision), the Optuna distributions, the scheduler's horizon, the MLflow params and the
resource checks. The shipped XTREME-R space gives XL one GPU and XXL eight."""

from __future__ import annotations

import optuna.distributions as d
import pytest

from xgrid.cli.plan_view import batch_lines, target_rows
from xgrid.config import load_space, parse_space
from xgrid.events import TrialRecord
from xgrid.planning.cost import estimate
from xgrid.planning.plan import build_plan
from xgrid.running.preflight import distinct_resources, resource_problems
from xgrid.running.requests import stage1_request, stage2_request
from xgrid.search import stage2
from xgrid.spaces import SPACES_DIR
from xgrid.tracking import open_writer
from xgrid.tracking.listener import TrackingListener
from tests.search.helpers import scheduler_horizons
from tests.tracking.memory import memory_backend  # noqa: F401

BASE = {"name": "mo", "base_models": [{"name": "small"}, {"name": "large"}], "intermediates": ["none", "mb_chunk"],
        "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0],
        "intermediate_training": {"learning_rate": 2e-3, "epochs": 1, "max_train_examples": 100},
        "target_training": {"learning_rate": {"values": [1e-3, 2e-3, 3e-3]}, "epochs": 3, "batch_size": 16,
                            "max_train_examples": 100},
        "search": {"trials_per_cell": 3}}
LARGE = {"intermediate_training": {"learning_rate": 2e-5, "epochs": 2},
         "target_training": {"learning_rate": 1e-5, "epochs": 2},
         "resources": {"workers_per_trial": 2, "strategy": "fsdp", "activation_checkpointing": True}}


@pytest.fixture(scope="module")
def plans(registry):
    plain = build_plan(parse_space(BASE, registry), registry)
    return plain, build_plan(parse_space(BASE | {"model_overrides": {"large": LARGE}}, registry), registry)


def of(plan, model, target="mb_udpos", intermediate="mb_chunk"):
    return next(c for c in plan.cells if (c.base_model.name, c.target, c.intermediate) == (model, target, intermediate))


def test_only_the_overridden_models_checkpoints_and_cells_change(plans):
    plain, overridden = plans
    for before, after in zip(plain.cells, overridden.cells):
        same_model = before.base_model.name == "small"
        assert (before.id == after.id) == same_model, before
        if before.intermediate != "none":
            assert (before.stage1_key == after.stage1_key) == same_model
    assert len({c.id for c in overridden.cells}) == len(overridden.cells)


def test_trials_follow_each_models_search(plans):
    plain, overridden = plans
    assert plain.stage2_trials() == 2 * 2 * 3  # 2 models x 2 intermediates x 3 rates (tatoeba is scored)
    assert overridden.stage2_trials() == 2 * 3 + 2 * 1  # large runs its one fixed rate
    assert overridden.trials_of(of(overridden, "large")) == 1 and overridden.trials_of(of(overridden, "small")) == 3


def test_the_cost_counts_each_models_own_epochs(plans):
    _, plan = plans
    small, large = estimate(plan).models
    assert small.stage1_example_passes == 100 * 1 and large.stage1_example_passes == 100 * 2
    assert small.stage2_example_passes == 2 * 3 * 100 * 3 and large.stage2_example_passes == 2 * 1 * 100 * 2


def test_requests_carry_the_models_settings(plans):
    _, plan = plans
    job = next(j for j in plan.trained_jobs if j.base_model.name == "large")
    assert stage1_request(job, plan.space, "/base").hparams.learning_rate == 2e-5
    assert stage1_request(job, plan.space, "/base").hparams.epochs == 2
    hp = stage2_request(of(plan, "large"), 1e-5, plan.space, "/enc").hparams
    assert (hp.learning_rate, hp.epochs) == (1e-5, 2)
    assert stage2_request(of(plan, "small"), 2e-3, plan.space, "/enc").hparams.epochs == 3


def test_each_models_run_has_its_own_distribution_and_horizon(plans, monkeypatch, tmp_path):
    _, plan = plans
    space = plan.space
    assert [r for r, _ in space.stage2_runs("mb_udpos")] == ["mb_udpos.small", "mb_udpos.large"]
    ids = [c.id for c in plan.cells_for("mb_udpos") if c.base_model.name == "large"]
    assert stage2.optuna_space(space, ids, "mb_udpos", "large")["learning_rate"] == d.CategoricalDistribution([1e-5])
    assert stage2.optuna_space(space, ids, "mb_udpos", "small")["learning_rate"] == d.CategoricalDistribution(
        [1e-3, 2e-3, 3e-3])
    runs = [("mb_udpos", [c for c in plan.cells_for("mb_udpos") if c.base_model.name == model], f"mb_udpos.{model}")
            for model in ("small", "large")]
    assert scheduler_horizons(monkeypatch, tmp_path, space, runs) == [3, 2]


def test_the_dry_run_shows_each_models_row_and_batch(plans, registry):
    _, plan = plans
    (udpos,) = [r for r in target_rows(plan) if r["trains"]]
    assert udpos["trials"] == 8 and [(r["base_models"], r["trials"], r["training"]["epochs"]) for r in udpos["runs"]] == [
        (["small"], 6, 3), (["large"], 2, 2)]
    lines = batch_lines(plan.space)
    assert lines[0].startswith("  global batch (small): stage 1 32 x grad_accum 1")
    assert lines[1].startswith("  global batch (large): stage 1 32 (16 per worker x 2 workers)")
    assert batch_lines(parse_space(BASE, registry)) == [  # models that share their settings share one line
        "  global batch: stage 1 32 x grad_accum 1 = 32 examples per update; stage 2 16 x grad_accum 1 = 16 examples "
        "per update"]


def test_preflight_checks_every_models_resources(plans):
    _, plan = plans
    every = distinct_resources(plan.space)
    assert [r.workers_per_trial for r in every] == [1, 2]
    problems = [line for r in every for line in resource_problems(r, {"CPU": 1.0})]
    assert any("2 worker(s)" in line for line in problems), problems


def test_each_trial_logs_its_models_settings(memory_backend, tmp_path, plans):  # noqa: F811
    _, plan = plans
    search_dir = tmp_path / "20250101-mo"
    search_dir.mkdir()
    listener = TrackingListener(open_writer("memory:mo", "mo").inner)
    listener.search_started(plan, str(search_dir))
    listener.trial_started(TrialRecord("t-large", of(plan, "large"), 1e-5))
    listener.trial_started(TrialRecord("t-small", of(plan, "small"), 2e-3))
    runs = {r.tags.get("trial_id"): r for r in memory_backend["memory:mo"].runs.values()}
    big, small = runs["t-large"].params, runs["t-small"].params
    assert (big["epochs"], big["intermediate.learning_rate"], big["intermediate.epochs"]) == ("2", "2e-05", "2")
    assert (small["epochs"], small["intermediate.learning_rate"], small["intermediate.epochs"]) == ("3", "0.002", "1")


# --- the shipped XTREME-R space -----------------------------------------------------------------------------
def test_the_xtreme_r_space_gives_xl_one_gpu_and_xxl_eight(registry):
    space = load_space(SPACES_DIR / "xtreme_r_syntactic_vs_semantic.yaml", registry)
    xl, xxl = space.resources_for("xlmr-xl"), space.resources_for("xlmr-xxl")
    assert (xl.workers_per_trial, xl.gpus_per_worker, xl.strategy, xl.precision, xl.activation_checkpointing) == (
        1, 1, "ddp", "bf16", True)
    assert (xxl.workers_per_trial, xxl.strategy, xxl.precision) == (8, "fsdp", "bf16")
    xl_rates = sorted(space.training_for("xnli", "xlmr-xl").learning_rate.values)
    xxl_rates = sorted(space.training_for("xnli", "xlmr-xxl").learning_rate.values)
    assert max(xxl_rates) < max(xl_rates)  # the larger model searches lower rates
    assert space.training_for("udpos", "xlmr-xxl").epochs == 10  # the target's protocol still applies
    for model in ("xlmr-xl", "xlmr-xxl"):  # 8 x 4 = 32 examples per update, for both
        t = space.training_for(None, model)
        assert t.batch_size * t.grad_accum == 32
