"""`model_overrides`: each base model its own training settings and resources. Validated against the space's base
models and the resource rules (each problem one line naming its field), merged with the precedence
`target_training` < the model's block < `target_overrides`, and re-checked when CLI flags override resources."""

import pytest
from pydantic import ValidationError

from xgrid.config import SpaceError, parse_space

BASE = {"name": "mo", "base_models": [{"name": "small"}, {"name": "large"}], "intermediates": ["none", "mb_chunk"],
        "targets": ["mb_udpos", "mb_xnli"], "seeds": [0],
        "intermediate_training": {"learning_rate": 2e-3, "batch_size": 16},
        "target_training": {"learning_rate": {"values": [1e-3, 2e-3]}, "epochs": 3, "batch_size": 16},
        "search": {"trials_per_cell": 2}}
LARGE = {"intermediate_training": {"learning_rate": 2e-5},
         "target_training": {"learning_rate": {"values": [1e-5, 2e-5]}, "epochs": 2},
         "resources": {"workers_per_trial": 2, "strategy": "fsdp", "activation_checkpointing": True}}


def space(registry, **fields):
    return parse_space(BASE | fields, registry)


def problem(registry, **fields) -> str:
    with pytest.raises(SpaceError) as err:
        space(registry, **fields)
    return str(err.value)


def test_each_model_gets_its_own_settings_and_the_others_keep_the_shared_ones(registry):
    s = space(registry, model_overrides={"large": LARGE})
    assert s.intermediate_training_for("large").learning_rate == 2e-5
    assert s.intermediate_training_for("large").batch_size == 16  # unset: the shared value
    assert s.intermediate_training_for("small") == s.intermediate_training
    large, small = s.training_for("mb_udpos", "large"), s.training_for("mb_udpos", "small")
    assert sorted(large.learning_rate.values) == [1e-5, 2e-5] and large.epochs == 2
    assert sorted(small.learning_rate.values) == [1e-3, 2e-3] and small.epochs == 3
    r = s.resources_for("large")
    assert (r.workers_per_trial, r.strategy, r.activation_checkpointing) == (2, "fsdp", True)
    assert s.resources_for("small") == s.resources and not s.resources.activation_checkpointing


def test_a_target_override_is_applied_over_the_models_block(registry):
    s = space(registry, model_overrides={"large": LARGE}, target_overrides={"mb_xnli": {"epochs": 7}})
    assert s.training_for("mb_xnli", "large").epochs == 7  # the target's own protocol, most specific
    assert sorted(s.training_for("mb_xnli", "large").learning_rate.values) == [1e-5, 2e-5]  # the model's rates
    assert s.training_for("mb_udpos", "large").epochs == 2


def test_one_model_searches_and_the_other_runs_a_fixed_rate(registry):
    s = space(registry, model_overrides={"large": {"target_training": {"learning_rate": 1e-5}}})
    assert s.trials_per_cell("mb_udpos", "small") == 2 and s.trials_per_cell("mb_udpos", "large") == 1


def test_an_unknown_model_is_named_with_a_suggestion(registry):
    message = problem(registry, model_overrides={"lage": LARGE})
    assert message == ("model_overrides.lage: 'lage' is not one of the space's base models (small, large); "
                       "did you mean 'large'?")


def test_an_unknown_field_is_named(registry):
    message = problem(registry, model_overrides={"large": {"resources": {"worker_per_trial": 2}}})
    assert message.startswith("model_overrides.large.resources.worker_per_trial: unknown field"), message
    message = problem(registry, model_overrides={"large": {"target_training": {"grad_clip": 0.5}}})
    assert message.startswith("model_overrides.large.target_training.grad_clip: unknown field"), message


def test_the_merged_resources_obey_the_resource_rules(registry):
    message = problem(registry, model_overrides={"large": {"resources": {"precision": "bf16"}}})
    assert message == "model_overrides.large.resources: precision bf16 needs gpus_per_worker > 0 (CPU runs are fp32)"
    message = problem(registry, model_overrides={"large": {"resources": {"cpu_offload": True}}})
    assert "cpu_offload is FSDP2's parameter offload: it needs strategy fsdp" in message


def test_a_stage1_rate_is_a_single_number(registry):
    message = problem(registry, model_overrides={"large": {"intermediate_training": {"learning_rate": {"values": [1e-5]}}}})
    assert message.startswith("model_overrides.large.intermediate_training.learning_rate"), message


def test_the_global_batch_must_split_over_the_models_own_workers(registry):
    message = problem(registry, model_overrides={"large": {"resources": {"workers_per_trial": 3}}})
    assert ("intermediate_training.batch_size: 16 is the global batch and must split evenly over the 3 workers of a "
            "large trial (model_overrides.large.resources.workers_per_trial); use a multiple of 3") in message
    # small runs one worker: its batch is never refused
    assert "small" not in message


def test_the_models_own_batch_is_named_where_it_is_set(registry):
    message = problem(registry, model_overrides={"large": {"resources": {"workers_per_trial": 2},
                                                           "target_training": {"batch_size": 5}}})
    assert message.startswith("model_overrides.large.target_training.batch_size: 5 is the global batch"), message


def test_cli_resource_flags_beat_a_models_own_and_are_checked_again(registry):
    s = space(registry, model_overrides={"large": LARGE})
    flagged = s.with_resources({"workers_per_trial": 4})
    assert flagged.resources_for("large").workers_per_trial == 4 and flagged.resources_for("small").workers_per_trial == 4
    assert flagged.resources_for("large").strategy == "fsdp"  # what the flags leave alone stays the model's
    with pytest.raises(ValidationError, match="must split evenly over the 3 workers"):
        s.with_resources({"workers_per_trial": 3})


def test_stage2_runs_group_the_models_that_share_their_settings(registry):
    plain = space(registry)
    assert plain.stage2_runs("mb_udpos") == [("mb_udpos", ("small", "large"))]
    s = space(registry, model_overrides={"large": LARGE})
    assert s.stage2_runs("mb_udpos") == [("mb_udpos.small", ("small",)), ("mb_udpos.large", ("large",))]
    # a model whose override touches stage 1 only shares the target's run
    s = space(registry, model_overrides={"large": {"intermediate_training": {"learning_rate": 1e-5}}})
    assert s.stage2_runs("mb_udpos") == [("mb_udpos", ("small", "large"))]


def test_overrides_survive_the_resolved_space(registry):
    """space.yaml (what a resume reads) gives back the same per-model settings."""
    s = space(registry, model_overrides={"large": LARGE})
    again = parse_space(s.model_dump(mode="json"), registry)
    assert again.fingerprint() == s.fingerprint()
    assert again.resources_for("large") == s.resources_for("large")
    assert again.training_for("mb_udpos", "large") == s.training_for("mb_udpos", "large")
