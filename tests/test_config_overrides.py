"""`target_overrides` and `power`: a target's own protocol is validated against the space's targets and the
registry (each problem one line naming its field), and `training_for` merges it over `target_training`."""

import pytest

from xgrid.config import OVERRIDABLE, SpaceError, TargetOverride, TrainingSettings, parse_space

BASE = {"name": "ov", "base_models": [{"name": "tiny"}], "intermediates": ["none"],
        "targets": ["mb_udpos", "mb_xnli"], "seeds": [0],
        "target_training": {"learning_rate": 1e-3, "epochs": 3, "max_length": 64, "batch_size": 16}}


def space(registry, **fields):
    return parse_space(BASE | fields, registry)


def problem(registry, **fields) -> str:
    with pytest.raises(SpaceError) as err:
        space(registry, **fields)
    return str(err.value)


def test_an_unknown_target_is_named_with_a_suggestion(registry):
    message = problem(registry, target_overrides={"mb_udpoz": {"epochs": 10}})
    assert message.startswith("target_overrides.mb_udpoz: 'mb_udpoz' is not one of the space's targets")
    assert "did you mean 'mb_udpos'?" in message and "\n" not in message


def test_a_target_of_the_registry_that_the_space_does_not_list_is_refused(registry):
    message = problem(registry, target_overrides={"mb_xquad": {"epochs": 2}})
    assert "target_overrides.mb_xquad: 'mb_xquad' is not one of the space's targets (mb_udpos, mb_xnli)" in message


def test_an_unknown_field_is_named_with_a_suggestion(registry):
    message = problem(registry, target_overrides={"mb_udpos": {"epoch": 10}})
    assert message == "target_overrides.mb_udpos.epoch: unknown field; did you mean 'epochs'?"


def test_grad_clip_is_shared_by_every_target(registry):
    # Not in OVERRIDABLE: the override model refuses it instead of silently ignoring it.
    assert "grad_clip" not in OVERRIDABLE
    assert "target_overrides.mb_udpos.grad_clip: unknown field" in problem(
        registry, target_overrides={"mb_udpos": {"grad_clip": 0.5}})


def test_a_language_the_target_does_not_offer_is_refused(registry):
    message = problem(registry, target_overrides={"mb_udpos": {"languages": ["xa", "zz"]}})
    assert message == ("target_overrides.mb_udpos.languages: 'zz' not evaluated by 'mb_udpos' "
                       "(it has en, xa, xb, xc)")


@pytest.mark.parametrize("override, field", [
    ({"epochs": 0}, "epochs"), ({"epochs": "ten"}, "epochs"), ({"batch_size": -1}, "batch_size"),
    ({"max_length": 4}, "max_length"), ({"warmup_ratio": 1.0}, "warmup_ratio"),
    ({"learning_rate": 3.0}, "learning_rate"), ({"learning_rate": {"low": 1e-3, "high": 1e-4}}, "learning_rate"),
    ({"languages": []}, "languages"), ({"max_train_examples": 0}, "max_train_examples"),
])
def test_bad_values_name_their_field(registry, override, field):
    message = problem(registry, target_overrides={"mb_xnli": override})
    assert message.startswith(f"target_overrides.mb_xnli.{field}"), message


def test_an_override_that_is_not_a_mapping_is_refused(registry):
    assert problem(registry, target_overrides={"mb_xnli": 10}).startswith("target_overrides.mb_xnli:")


def test_training_for_merges_the_override_over_the_shared_settings(registry):
    s = space(registry, target_overrides={"mb_udpos": {"epochs": 10, "learning_rate": {"values": [1e-3, 3e-3]}}})
    udpos, xnli = s.training_for("mb_udpos"), s.training_for("mb_xnli")
    assert udpos.epochs == 10 and udpos.searched and sorted(udpos.learning_rate.values) == [1e-3, 3e-3]
    assert (udpos.max_length, udpos.batch_size) == (64, 16)  # unset fields keep the shared value
    assert xnli == s.target_training and not xnli.searched  # a target without an override: the shared settings
    assert s.target_training.epochs == 3  # the shared block itself is untouched


def test_every_overridable_field_reaches_the_settings(registry):
    values = {"learning_rate": 2e-3, "epochs": 7, "batch_size": 8, "grad_accum": 2, "max_length": 96,
              "max_train_examples": 50, "max_eval_examples": 20, "warmup_ratio": 0.2, "weight_decay": 0.05}
    assert set(values) == set(OVERRIDABLE)
    settings = space(registry, target_overrides={"mb_xnli": values}).training_for("mb_xnli")
    dumped = settings.model_dump(mode="json")
    assert {k: dumped[k] for k in values} == values
    assert isinstance(settings, TrainingSettings)


def test_languages_only_leaves_the_training_settings_alone(registry):
    s = space(registry, target_overrides={"mb_udpos": {"languages": ["xa"]}})
    assert s.training_for("mb_udpos") == s.target_training
    assert TargetOverride(languages=["xa"]).applied_to(s.target_training) is s.target_training


def test_overrides_survive_the_resolved_space(registry):
    """space.yaml (the resolved space a resume reads) gives back the same per-target settings."""
    s = space(registry, target_overrides={"mb_udpos": {"epochs": 10, "max_length": 128}})
    again = parse_space(s.model_dump(mode="json"), registry)
    assert again.training_for("mb_udpos") == s.training_for("mb_udpos") and again.fingerprint() == s.fingerprint()


def test_power_per_target_names_a_target_of_the_space(registry):
    message = problem(registry, power={"per_target": {"mb_xnlii": {"task_sd": 3.0}}})
    assert message.startswith("power.per_target.mb_xnlii: 'mb_xnlii' is not one of the space's targets")
    assert "did you mean 'mb_xnli'?" in message


def test_power_for_falls_back_on_the_shared_assumptions(registry):
    s = space(registry, power={"task_sd": 2.5, "seed_sd": 0.5, "per_target": {"mb_udpos": {"task_sd": 4.0}}})
    assert s.power_for("mb_udpos") == (4.0, 0.5) and s.power_for("mb_xnli") == (2.5, 0.5)


def test_power_values_are_checked(registry):
    assert problem(registry, power={"task_sd": 0}).startswith("power.task_sd:")
    assert problem(registry, power={"per_target": {"mb_udpos": {"seed_sd": -1}}}).startswith(
        "power.per_target.mb_udpos.seed_sd:")
