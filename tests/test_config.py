"""The learning-rate forms own what the search does with them: their Optuna distribution, the trials enqueued
per cell, and the one value a plain run uses. A bare number stays a bare number in the resolved space."""

import re
from pathlib import Path

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


def test_a_targets_trials_are_planned_in_rounds_of_the_cells(registry):
    """Every cell's first trial before any cell's second: the target's one sampler has then seen every cell once."""
    assert rate(registry, {"low": 1e-4, "high": 1e-2}).learning_rate.enqueued_points(["a", "b"], 2) == [
        {"cell": "a"}, {"cell": "b"}, {"cell": "a"}, {"cell": "b"}]
    values = rate(registry, {"values": [0.003, 0.001]}).learning_rate
    assert values.enqueued_points(["a", "b"], 2) == [
        {"cell": "a", "learning_rate": 0.001}, {"cell": "b", "learning_rate": 0.001},
        {"cell": "a", "learning_rate": 0.003}, {"cell": "b", "learning_rate": 0.003}]


def test_trials_per_cell_by_learning_rate(registry):
    """The default 8 trials for a range; a list of values at most once per value; a fixed rate once."""
    spaced = lambda value, search=None: parse_space(BASE | {"target_training": {"learning_rate": value}}
                                                    | ({"search": search} if search else {}), registry)
    target = BASE["targets"][0]
    assert spaced({"low": 1e-4, "high": 1e-2}).trials_per_cell(target) == 8
    assert spaced({"values": [1e-4, 1e-3, 1e-2]}).trials_per_cell(target) == 3
    assert spaced({"values": [1e-4, 1e-3, 1e-2]}, {"trials_per_cell": 2}).trials_per_cell(target) == 2
    assert spaced(1e-3, {"trials_per_cell": 5}).trials_per_cell(target) == 1


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


# --- local_paths: which tasks may read a local copy, and where ------------------------------------------------
HUB = {"name": "lp", "base_models": [{"name": "tiny"}], "intermediates": ["none", "chunk"],
       "targets": ["xnli.de", "udpos"], "seeds": [0], "target_training": {"learning_rate": 1e-5}}


def local_paths_problem(registry, paths) -> str:
    from xgrid.config import SpaceError

    with pytest.raises(SpaceError) as err:
        parse_space(HUB | {"local_paths": paths}, registry)
    return str(err.value)


def test_local_paths_for_every_task_the_space_reads(registry, tmp_path, monkeypatch):
    # An intermediate, a target named by a language variant, a target's training task (XNLI trains on MNLI).
    monkeypatch.chdir(tmp_path)
    space = parse_space(HUB | {"local_paths": {"chunk": "copies/chunk", "xnli": str(tmp_path / "xnli"),
                                               "mnli": "~/mnli", "udpos": "./copies/../copies/udpos"}}, registry)
    # Relative paths are resolved where the space is read, so a Ray worker with another cwd finds them.
    assert space.local_paths == {"chunk": str(tmp_path / "copies" / "chunk"), "xnli": str(tmp_path / "xnli"),
                                 "mnli": str(Path("~/mnli").expanduser()), "udpos": str(tmp_path / "copies" / "udpos")}
    again = parse_space(space.model_dump(mode="json"), registry)  # the resolved space.yaml reads back the same
    assert again.local_paths == space.local_paths


@pytest.mark.parametrize("paths, message", [
    ({"panx": "/data/panx"}, "local_paths.panx: task 'panx' is not read by this space"),
    ({"squad": "/data/squad"}, "local_paths.squad: task 'squad' is not read by this space"),
    ({"mb_udpos": "/data/mb"}, "local_paths.mb_udpos: 'mb_udpos' is generated by the embedded micro-benchmark"),
    ({"xnli.de": "/data/xnli"}, "local_paths.xnli.de: name the task, not a language variant: local_paths.xnli"),
    ({"udpos": ""}, "local_paths.udpos: the path is empty"),
    ({"udpos": "s3://bucket/udpos"}, "local_paths.udpos: a folder on a file system every node sees"),
])
def test_local_paths_that_no_task_of_the_space_reads_are_refused(registry, paths, message):
    problem = local_paths_problem(registry, paths)
    assert message in problem and "\n" not in problem, problem


def test_embedded_task_in_the_space_still_has_no_data_to_read(registry):
    from xgrid.config import SpaceError

    with pytest.raises(SpaceError, match="local_paths.mb_udpos: 'mb_udpos' is generated by the embedded"):
        parse_space(BASE | {"target_training": {"learning_rate": 1e-3}, "local_paths": {"mb_udpos": "/x"}}, registry)


def test_missing_local_paths_names_each_folder_that_is_not_there(registry, tmp_path):
    from xgrid.config import missing_local_paths

    (tmp_path / "chunk").mkdir()
    space = parse_space(HUB | {"local_paths": {"chunk": str(tmp_path / "chunk"), "udpos": str(tmp_path / "no")}},
                        registry)
    assert missing_local_paths(space) == [f"local_paths.udpos: {str(tmp_path / 'no')!r} does not exist"]


def test_search_and_prefetch_refuse_an_unused_local_path_with_one_line(registry, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from tests.assertions import one_line_error
    from xgrid.cli import app

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(HUB | {"local_paths": {"paws": str(tmp_path)}}))
    for command in (["search", str(path), "--dry-run"], ["prefetch", str(path), "--dry-run"]):
        one_line_error(CliRunner().invoke(app, command), "local_paths.paws: task 'paws' is not read by this space")


# --- the loader: YAML read the way a user means it, or refused in one line ---------------------------------
from xgrid.config import MAX_SPACE_VALUES, SpaceError, load_space  # noqa: E402

SPACE_TEXT = """\
name: lr
base_models: [{name: tiny}]
intermediates: [none]
targets: [mb_udpos]
seeds: [0]
target_training: {learning_rate: 0.001}
"""


def load_text(tmp_path, text, registry=None):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path, registry)


def test_a_key_given_twice_is_an_error_naming_the_key_and_both_lines(tmp_path):
    with pytest.raises(SpaceError, match=r"\(line 7, column 1\): duplicate key 'seeds' \(first given on line 5\)"):
        load_text(tmp_path, SPACE_TEXT + "seeds: [1]\n")


def test_merge_keys_still_override_as_yaml_defines(tmp_path):
    text = SPACE_TEXT.replace("target_training: {learning_rate: 0.001}",
                              "defaults: &d {learning_rate: 0.001, epochs: 2}\ntarget_training: {<<: *d, epochs: 5}")
    # `defaults` is not a field: the merge itself read fine, and the override won
    with pytest.raises(SpaceError, match="^defaults: unknown field$"):
        load_text(tmp_path, text)
    assert load_text(tmp_path, SPACE_TEXT.replace("target_training: {learning_rate: 0.001}",
                                                  "target_training: &t {learning_rate: 0.001, epochs: 2}\n"
                                                  "intermediate_training: {<<: *t, epochs: 5}")
                     ).intermediate_training.epochs == 5


def test_aliases_are_fine_until_they_explode(tmp_path):
    assert load_text(tmp_path, SPACE_TEXT.replace("name: lr", "name: &n lr") + "description: *n\n").description == "lr"
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]"
                                                           for i in range(1, 8)]
    with pytest.raises(SpaceError, match=f"aliases expand to more than {MAX_SPACE_VALUES:,} values"):
        load_text(tmp_path, SPACE_TEXT + "\n".join(levels) + "\n")
    with pytest.raises(SpaceError, match="refers to a value that contains it"):
        load_text(tmp_path, SPACE_TEXT + "description: &d {a: *d}\n")


@pytest.mark.parametrize("written,value", [("1e-3", 0.001), ("5E-4", 0.0005), ("'1e-3'", 0.001), ("0.002", 0.002)])
def test_a_learning_rate_reads_as_users_write_it(tmp_path, written, value):
    text = SPACE_TEXT.replace("{learning_rate: 0.001}", f"{{learning_rate: {written}}}")
    assert load_text(tmp_path, text).target_training.learning_rate.value == value


@pytest.mark.parametrize("field,value,message", [
    ("target_training", {"learning_rate": float("inf")}, "target_training.learning_rate.fixed: Input should be a finite number"),
    ("target_training", {"learning_rate": 1e-3, "grad_clip": float("nan")}, "target_training.grad_clip: Input should be a finite number"),
    ("target_training", {"learning_rate": {"low": 1e-4, "high": float("inf")}}, "learning_rate.range.high: Input should be a finite number"),
    ("search", {"reduction_factor": float("inf")}, "search.reduction_factor: Input should be a finite number"),
    ("search", {"sampler_seed": 2**32}, "search.sampler_seed: Input should be less than 4294967296"),
    ("seeds", [2**32], "seeds[0]: Input should be less than 4294967296"),
    ("microbench_seed", 2**64, "microbench_seed: Input should be less than 4294967296"),
    ("retrieval", {"layer": -1}, "retrieval.layer: Input should be greater than or equal to 0"),
    ("retrieval", {"layer": 10**6}, "retrieval.layer: Input should be less than or equal to 256"),
    ("resources", {"cpus_per_worker": float("inf")}, "resources.cpus_per_worker: Input should be a finite number"),
])
def test_numbers_are_finite_and_in_range(registry, field, value, message):
    data = BASE | {"target_training": {"learning_rate": 0.001}} | {field: value}
    with pytest.raises(SpaceError, match=re.escape(message)):
        parse_space(data, registry)


def test_the_largest_seed_is_accepted(registry):
    space = parse_space(BASE | {"seeds": [2**32 - 1], "target_training": {"learning_rate": 0.001}}, registry)
    assert space.seeds == [2**32 - 1]


def test_200000_seeds_are_checked_in_one_pass(registry):
    """The duplicate checks count (they were O(n^2) with list.count); the grid-size check then refuses it."""
    data = BASE | {"target_training": {"learning_rate": 0.001}}
    with pytest.raises(SpaceError, match="^seeds: duplicate entries: 3, 5$"):
        parse_space(data | {"seeds": list(range(200_000)) + [5, 3]}, registry)
    with pytest.raises(SpaceError, match=r"the grid has 200,000 cells .* 1 x 1 x 1 x 200000\), more than the 100,000"):
        parse_space(data | {"seeds": list(range(200_000))}, registry)
    assert len(parse_space(data | {"seeds": list(range(100_000))}, registry).seeds) == 100_000


def test_the_file_is_checked_before_yaml_reads_it(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(SPACE_TEXT.encode() + b"description: \xff\n")
    with pytest.raises(SpaceError, match=r"not UTF-8 text: byte 0xff at offset 143 \(line 7\)"):
        load_space(path)
    path.write_bytes(b"\xef\xbb\xbf" + SPACE_TEXT.encode())  # a UTF-8 byte-order mark is fine
    assert load_space(path).name == "lr"
    with pytest.raises(SpaceError, match="is a folder, not a search space file"):
        load_space(tmp_path)
    with pytest.raises(SpaceError, match="the file is empty"):
        load_text(tmp_path, "# nothing but a comment\n")


def test_batch_size_is_the_global_batch_split_over_the_workers(registry):
    from xgrid.config import SpaceError
    from xgrid.training.ray_context import per_rank_batch

    two = {"resources": {"workers_per_trial": 2, "trial_backend": "ray_train"}}
    space = parse_space(BASE | {"target_training": {"learning_rate": 1e-3, "batch_size": 32}} | two, registry)
    assert per_rank_batch(space.target_training.batch_size, 2) == 16  # each worker's share: 2 x 16 = 32, as inline
    assert per_rank_batch(32, 1) == 32
    with pytest.raises(SpaceError) as info:
        parse_space(BASE | {"target_training": {"learning_rate": 1e-3, "batch_size": 33},
                            "intermediate_training": {"learning_rate": 1e-3, "batch_size": 8},
                            "target_overrides": {"mb_udpos": {"batch_size": 7}}} | two, registry)
    message = str(info.value)
    assert "target_training.batch_size: 33 is the global batch and must split evenly over the 2 workers" in message
    assert "target_overrides.mb_udpos.batch_size: 7" in message
    assert "intermediate_training" not in message  # 8 splits evenly
