"""A target's own protocol (`target_overrides`) reaches everything downstream of the space: the plan (trials,
languages, cell ids), the dry run's cost, the stage-2 requests and Optuna distributions, the scheduler's epochs,
and the MLflow params of each trial. The shipped X-STILTs space carries jiant's per-task settings."""

from __future__ import annotations

import optuna.distributions as d
import pytest

from xgrid.config import load_space, parse_space
from xgrid.events import TrialRecord
from xgrid.planning.cost import estimate
from xgrid.planning.plan import build_plan
from xgrid.running.requests import stage2_request
from xgrid.search import stage2
from xgrid.spaces import SPACES_DIR
from xgrid.tracking import open_writer
from xgrid.tracking.listener import TrackingListener
from tests.search.helpers import scheduler_horizons
from tests.tracking.memory import memory_backend  # noqa: F401

SHARED = {"learning_rate": 1e-3, "epochs": 2, "max_length": 48, "batch_size": 16, "max_train_examples": 100}
BASE = {"name": "ov", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
        "targets": ["mb_udpos", "mb_xnli", "mb_tatoeba"], "seeds": [0, 1], "target_training": SHARED,
        "search": {"trials_per_cell": 3}}
UDPOS = {"epochs": 10, "max_length": 96, "batch_size": 8, "learning_rate": {"low": 1e-4, "high": 1e-2}}


def planned(registry, overrides=None, **fields):
    space = parse_space(BASE | {"target_overrides": overrides or {}} | fields, registry)
    return build_plan(space, registry)


@pytest.fixture(scope="module")
def plans(registry):
    """The same grid without and with an override for mb_udpos."""
    return planned(registry), planned(registry, {"mb_udpos": UDPOS})


def cells_by_key(plan):
    return {(c.target, c.intermediate, c.seed): c for c in plan.cells}


# --- the plan -------------------------------------------------------------------------------------------------
def test_a_searched_rate_in_one_target_and_a_fixed_one_in_another(plans):
    plain, overridden = plans
    assert [plain.trials_per_cell(t) for t in ("mb_udpos", "mb_xnli")] == [1, 1]
    assert [overridden.trials_per_cell(t) for t in ("mb_udpos", "mb_xnli")] == [3, 1]
    # 2 intermediates x 2 seeds: 4 udpos cells of 3 trials, 4 xnli cells of 1; retrieval trains nothing.
    assert plain.stage2_trials() == 8 and overridden.stage2_trials() == 4 * 3 + 4


def test_cell_ids_follow_the_targets_own_settings_only(registry, plans):
    plain, overridden = plans
    before, after = cells_by_key(plain), cells_by_key(overridden)
    assert before.keys() == after.keys()
    for key, cell in before.items():
        same = cell.id == after[key].id
        assert same == (key[0] != "mb_udpos"), key  # only udpos cells change: a second search adds, never replaces
        assert cell.stage1_key == after[key].stage1_key  # the intermediate checkpoint is shared either way
    assert len({c.id for c in overridden.cells}) == len(overridden.cells)


def test_two_spaces_differing_only_in_udpos_epochs(registry):
    ten = cells_by_key(planned(registry, {"mb_udpos": {"epochs": 10}}))
    eleven = cells_by_key(planned(registry, {"mb_udpos": {"epochs": 11}}))
    for key, cell in ten.items():
        assert (cell.id != eleven[key].id) == (key[0] == "mb_udpos"), key


def test_an_override_equal_to_the_shared_value_keeps_the_cells(registry):
    """What a cell depends on is the settings it trains with, not how the space spells them."""
    plain = cells_by_key(planned(registry))
    spelled = cells_by_key(planned(registry, {"mb_udpos": {"epochs": SHARED["epochs"]}}))
    assert {k: c.id for k, c in plain.items()} == {k: c.id for k, c in spelled.items()}


def test_languages_narrowed_by_an_override_keep_english(registry):
    plan = planned(registry, {"mb_udpos": {"languages": ["xb"]}})
    assert {c.languages for c in plan.cells_for("mb_udpos")} == {("en", "xb")}
    assert {c.languages for c in plan.cells_for("mb_xnli")} == {("en", "xa", "xb", "xc")}


# --- the cost ---------------------------------------------------------------------------------------------------
def test_example_passes_grow_with_an_overrides_epochs(registry):
    """Stage 2 passes: per trained cell, min(train size, cap) x epochs x trials."""
    plain = estimate(planned(registry))
    longer = estimate(planned(registry, {"mb_udpos": {"epochs": 10}}))
    searched = estimate(planned(registry, {"mb_udpos": {"epochs": 10, "learning_rate": {"values": [1e-3, 3e-3]}}}))
    per_cell_epoch = SHARED["max_train_examples"]  # both micro-benchmark tasks have more rows than the cap
    udpos_cells = xnli_cells = 4
    assert plain.stage2_example_passes == (udpos_cells + xnli_cells) * per_cell_epoch * 2
    assert longer.stage2_example_passes == udpos_cells * per_cell_epoch * 10 + xnli_cells * per_cell_epoch * 2
    # trials_per_cell is 3, but a list of 2 values runs each value once per cell (a repeat would be the same run)
    assert searched.stage2_example_passes == udpos_cells * per_cell_epoch * 10 * 2 + xnli_cells * per_cell_epoch * 2
    assert searched.stage2_trials == udpos_cells * 2 + xnli_cells
    assert longer.cpu_seconds > plain.cpu_seconds
    assert longer.stage1_example_passes == plain.stage1_example_passes  # stage 1 has no per-target protocol


def test_a_cap_in_an_override_limits_its_passes(registry):
    capped = estimate(planned(registry, {"mb_xnli": {"max_train_examples": 10}}))
    assert capped.stage2_example_passes == 4 * 100 * 2 + 4 * 10 * 2


# --- what runs ----------------------------------------------------------------------------------------------
def test_stage2_requests_carry_the_targets_settings(plans):
    _, plan = plans
    udpos = next(c for c in plan.cells_for("mb_udpos") if c.trains)
    xnli = plan.cells_for("mb_xnli")[0]
    hp = stage2_request(udpos, 0.003, plan.space, "/enc").hparams
    assert (hp.learning_rate, hp.epochs, hp.max_length, hp.batch_size, hp.max_train_examples) == (0.003, 10, 96, 8, 100)
    hp = stage2_request(xnli, 0.001, plan.space, "/enc").hparams
    assert (hp.epochs, hp.max_length, hp.batch_size) == (2, 48, 16)


def test_a_retrieval_target_reads_its_own_max_length(registry):
    plan = planned(registry, {"mb_tatoeba": {"max_length": 128}})
    cell = plan.cells_for("mb_tatoeba")[0]
    assert not cell.trains and stage2_request(cell, 1e-3, plan.space, "/enc").hparams.max_length == 128


def test_optuna_distribution_and_queue_per_target(plans):
    _, plan = plans
    space = plan.space
    ids = [c.id for c in plan.cells_for("mb_udpos")]
    assert stage2.optuna_space(space, ids, "mb_udpos")["learning_rate"] == d.FloatDistribution(1e-4, 1e-2, log=True)
    assert stage2.optuna_space(space, ids, "mb_xnli")["learning_rate"] == d.CategoricalDistribution([1e-3])
    assert len(stage2.enqueued_points(space, ids, "mb_udpos")) == 3 * len(ids)  # the sampler picks each rate
    xnli_ids = [c.id for c in plan.cells_for("mb_xnli")]
    assert stage2.enqueued_points(space, xnli_ids, "mb_xnli") == [{"cell": c, "learning_rate": 1e-3} for c in xnli_ids]


def test_the_scheduler_runs_to_the_targets_epochs(monkeypatch, tmp_path, plans):
    """`_tune` hands each target's own epoch count to the scheduler (ASHA's max_t)."""
    _, plan = plans
    runs = [(target, plan.cells_for(target), None) for target in ("mb_udpos", "mb_xnli")]
    assert scheduler_horizons(monkeypatch, tmp_path, plan.space, runs) == [10, 2]


# --- tracking -----------------------------------------------------------------------------------------------
def test_each_trial_logs_its_targets_settings_as_params(memory_backend, tmp_path, plans):  # noqa: F811
    _, plan = plans
    search_dir = tmp_path / "20250101-ov"
    search_dir.mkdir()
    listener = TrackingListener(open_writer("memory:ov", "ov").inner)
    listener.search_started(plan, str(search_dir))
    udpos = next(c for c in plan.cells_for("mb_udpos") if c.intermediate == "mb_chunk")
    xnli = next(c for c in plan.cells_for("mb_xnli") if c.intermediate == "mb_chunk")
    listener.trial_started(TrialRecord("t-udpos", udpos, 0.0042))
    listener.trial_started(TrialRecord("t-xnli", xnli, 0.001))
    runs = {r.tags.get("trial_id"): r for r in memory_backend["memory:ov"].runs.values()}
    u, x = runs["t-udpos"].params, runs["t-xnli"].params
    assert (u["learning_rate"], u["epochs"], u["max_length"], u["batch_size"]) == ("0.0042", "10", "96", "8")
    assert (x["learning_rate"], x["epochs"], x["max_length"], x["batch_size"]) == ("0.001", "2", "48", "16")
    assert u["intermediate.epochs"] == x["intermediate.epochs"]  # stage 1's settings are shared
    assert runs["t-udpos"].tags["cell_id"] == udpos.id


# --- the shipped X-STILTs space -----------------------------------------------------------------------------
JIANT = {"xnli": (2, 256, 8), "pawsx": (5, 256, 8), "udpos": (10, 256, 8), "panx": (10, 256, 8),
         "xquad": (2, 384, 4), "mlqa": (2, 384, 4), "tydiqa": (2, 384, 4)}


@pytest.mark.parametrize("folder", [SPACES_DIR, SPACES_DIR.parent.parent / "search_spaces"])
def test_the_x_stilts_space_has_jiants_per_task_settings(registry, folder):
    space = load_space(folder / "x_stilts_reproduction.yaml", registry)
    for target, (epochs, max_length, grad_accum) in JIANT.items():
        settings = space.training_for(target)
        assert (settings.epochs, settings.max_length, settings.grad_accum) == (epochs, max_length, grad_accum), target
        assert (settings.batch_size, float(settings.learning_rate)) == (4, 1e-5), target
        assert (settings.warmup_ratio, settings.grad_clip) == (0.1, 1.0), target
    for target in ("bucc2018", "tatoeba"):  # scored, not trained: tokenized at 512 as jiant's retrieval tasks
        assert space.training_for(target).max_length == 512
    assert set(space.target_overrides) == set(JIANT) | {"bucc2018", "tatoeba"}


def test_both_copies_of_the_x_stilts_space_are_the_same_file():
    shipped = (SPACES_DIR / "x_stilts_reproduction.yaml").read_text()
    assert (SPACES_DIR.parent.parent / "search_spaces" / "x_stilts_reproduction.yaml").read_text() == shipped


def test_the_x_stilts_plan_trains_each_target_for_its_own_epochs(registry):
    plan = build_plan(load_space(SPACES_DIR / "x_stilts_reproduction.yaml", registry), registry)
    cell = plan.cells_for("udpos")[0]
    assert stage2_request(cell, 1e-5, plan.space, "/enc").hparams.epochs == 10
    assert stage2_request(plan.cells_for("xquad")[0], 1e-5, plan.space, "/enc").hparams.max_length == 384
