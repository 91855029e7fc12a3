"""The dry run's cost: work counted only for checkpoints still to train, and a time estimate per base model for
every model whose size is known offline (the study's list, a local folder's config, a config in the HF cache),
with an explicit note for the others."""

from __future__ import annotations

import pytest

from xgrid.config import parse_space
from xgrid.planning.cost import KNOWN_PARAMS, estimate, model_params
from xgrid.planning.plan import build_plan
from xgrid.spaces import DEFAULT_SPACE
from xgrid.config import load_space
from tests.models import tiny_families

GHOST = "xgrid-tests/no-such-encoder"  # a hub id that no cache holds


def space(*base_models: dict) -> dict:
    return {"name": "cost", "base_models": list(base_models), "intermediates": ["none", "mb_chunk"],
            "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0, 1],
            "target_training": {"learning_rate": {"low": 1e-4, "high": 1e-2}}, "search": {"trials_per_cell": 2}}


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    return tiny_families.xlmr(tmp_path_factory.mktemp("local-xlmr") / "model")


def real_parameter_count(folder) -> int:
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), add_pooling_layer=False)
    return sum(p.numel() for p in model.parameters())


def test_checkpoints_in_the_store_are_not_counted_as_work(registry):
    plan = build_plan(load_space(DEFAULT_SPACE, registry), registry)
    fresh, stored = estimate(plan), estimate(plan, has=lambda key: True)
    assert fresh.stage1_jobs == stored.stage1_jobs == len(plan.trained_jobs) == 16
    assert (fresh.stage1_to_train, fresh.stage1_in_store) == (16, None)  # no store looked at: all to train
    assert (stored.stage1_to_train, stored.stage1_in_store) == (0, 16)
    assert stored.stage1_example_passes == 0 and stored.stage2_example_passes == fresh.stage2_example_passes
    assert stored.cpu_seconds < fresh.cpu_seconds
    one = plan.trained_jobs[0].key
    partial = estimate(plan, has=lambda key: key == one)
    assert (partial.stage1_to_train, partial.stage1_in_store) == (15, 1)
    assert stored.cpu_seconds < partial.cpu_seconds < fresh.cpu_seconds


def test_the_embedded_default_gets_a_cpu_estimate_per_model(registry):
    cost = estimate(build_plan(load_space(DEFAULT_SPACE, registry), registry))
    [tiny] = cost.models
    assert tiny.model == "tiny" and tiny.cpu_seconds > 0 and tiny.reason is None
    assert cost.cpu_seconds == tiny.cpu_seconds + cost.cpu_start_seconds  # the search's start-up, once
    assert cost.gpu_hours is None and not cost.notes


def test_a_local_folder_is_sized_from_its_config(registry, local_model):
    cost = estimate(build_plan(parse_space(space({"name": "local", "source": str(local_model)}), registry), registry))
    [local] = cost.models
    assert local.params == real_parameter_count(local_model)
    assert local.reason is None and local.gpu_hours is not None and local.gpu_hours > 0
    assert cost.gpu_hours == local.gpu_hours and not cost.notes


def test_known_encoders_are_sized_from_the_list_without_reading_anything():
    assert model_params("FacebookAI/xlm-roberta-large") == (KNOWN_PARAMS["FacebookAI/xlm-roberta-large"], None)


def test_an_unknown_hub_id_gets_an_explicit_no_estimate_note(registry, local_model):
    plan = build_plan(parse_space(space({"name": "tiny"}, {"name": "local", "source": str(local_model)},
                                        {"name": "ghost", "source": GHOST}), registry), registry)
    cost = estimate(plan)
    by_name = {m.model: m for m in cost.models}
    assert list(by_name) == ["tiny", "local", "ghost"]
    ghost = by_name["ghost"]
    assert ghost.params is None and ghost.cpu_seconds is None and ghost.gpu_hours is None
    assert "unknown offline" in ghost.reason
    assert ("no time estimate for ghost: its size is unknown offline (not in the HF cache; run "
            "`xgrid prefetch SPACE`)") in cost.notes
    # the others still have theirs, and the totals say they leave one model out
    assert by_name["tiny"].cpu_seconds + cost.cpu_start_seconds == cost.cpu_seconds
    assert by_name["local"].gpu_hours == cost.gpu_hours
    assert not cost.complete


def test_work_is_split_by_base_model(registry, local_model):
    plan = build_plan(parse_space(space({"name": "tiny"}, {"name": "local", "source": str(local_model)}), registry),
                      registry)
    cost = estimate(plan)
    assert sum(m.stage1_example_passes for m in cost.models) == cost.stage1_example_passes
    assert sum(m.stage2_example_passes for m in cost.models) == cost.stage2_example_passes
    assert cost.models[0].stage1_example_passes == cost.models[1].stage1_example_passes > 0
    assert cost.complete


def test_trials_that_start_a_torch_trainer_are_charged_its_start_up(registry):
    """Issue 13: the CPU estimate of a ray_train space was 9-50x below its measured wall: a TorchTrainer per trial
    costs ~22 s of start-up on 2 CPUs (benchmarks/trial_overhead.py), and a trial of 2 workers x 1 CPU takes both
    CPUs, so such trials run one at a time."""
    from xgrid.planning.cost import TINY_TRIAL_OVERHEAD_S, TORCH_TRAINER_OVERHEAD_S

    base = {"name": "rt", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
            "targets": ["mb_udpos", "mb_tatoeba"], "seeds": [0],
            "intermediate_training": {"learning_rate": 3e-3, "epochs": 1, "max_train_examples": 200},
            "target_training": {"learning_rate": {"values": [3e-3, 1e-2]}, "epochs": 2, "max_train_examples": 150},
            "search": {"trials_per_cell": 2}, "resources": {"max_concurrent_trials": 2}}

    def model_seconds(resources):
        space = parse_space(base | {"resources": base["resources"] | resources}, registry)
        (model,) = estimate(build_plan(space, registry)).models
        return model.cpu_seconds

    inline = model_seconds({})
    forced = model_seconds({"trial_backend": "ray_train"})
    two_workers = model_seconds({"workers_per_trial": 2})
    # 1 stage-1 job + 4 trials start a TorchTrainer each; the 2 retrieval evaluations stay inline
    extra = 5 * (TORCH_TRAINER_OVERHEAD_S - TINY_TRIAL_OVERHEAD_S) / 2  # 2 slots: 1-CPU trials two at a time
    assert forced == pytest.approx(inline + extra)
    assert two_workers > forced  # 2 workers x 1 CPU take both CPUs: one trial at a time
