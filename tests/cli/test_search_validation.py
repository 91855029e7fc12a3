"""Malformed search spaces: `xgrid search SPACE --dry-run` exits 2, before Ray starts, with one clear line per
problem that names the offending field."""

import copy

import pytest
import yaml
from typer.testing import CliRunner

from xgrid.cli import app
from tests.assertions import one_line_error

VALID = {
    "name": "t",
    "base_models": [{"name": "tiny", "source": "embedded:tiny"}],
    "intermediates": ["none", "mb_chunk", {"name": "sem", "tasks": ["mb_para", "mb_qa"]}],
    "targets": ["mb_xnli", "mb_udpos"],
    "seeds": [0, 1],
    "target_training": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": 2},
}


def edit(path, value):
    """A copy of VALID with `path` (a.b[0].c as a list) set to value, or deleted when value is DELETE."""
    space = copy.deepcopy(VALID)
    node = space
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return space


DELETE = object()

CASES = [
    # (space, text that must appear in the message)
    (edit(["targets"], ["mb_xnl"]), "targets[0]: unknown task 'mb_xnl'; did you mean 'mb_xnli'"),
    (edit(["intermediates", 1], "mb_chunck"), "intermediates[1]: unknown task 'mb_chunck'; did you mean 'mb_chunk'"),
    (edit(["intermediates", 2, "tasks", 1], "mb_qq"), "intermediates[2].tasks[1]: unknown task 'mb_qq'"),
    (edit(["targets"], ["mb_chunk"]), "targets[0]: 'mb_chunk' is not a target task"),
    (edit(["intermediates"], ["mb_tatoeba"]), "intermediates[0]: 'mb_tatoeba' is a retrieval task"),
    (edit(["seeds"], [0, 0]), "seeds: duplicate entries: 0"),
    (edit(["seeds"], [-1]), "seeds[0]: Input should be greater than or equal to 0"),
    (edit(["seeds"], []), "seeds: List should have at least 1 item"),
    (edit(["targets"], []), "targets: List should have at least 1 item"),
    (edit(["base_models"], []), "base_models: List should have at least 1 item"),
    (edit(["target_training", "learnin_rate"], 0.1), "target_training.learnin_rate: unknown field; did you mean 'learning_rate'?"),
    (edit(["target_training", "learning_rate"], {"low": 1e-2, "high": 1e-4}), "target_training.learning_rate.range: low (0.01) must be below high (0.0001)"),
    (edit(["target_training", "learning_rate"], "fast"), "target_training.learning_rate: a learning rate is a number"),
    (edit(["target_training", "learning_rate"], 3.0), "target_training.learning_rate.fixed: Input should be less than 1"),
    (edit(["target_training", "learning_rate"], {"values": []}), "target_training.learning_rate.choices.values: List should have at least 1 item"),
    (edit(["target_training", "epochs"], 0), "target_training.epochs: Input should be greater than or equal to 1"),
    (edit(["target_training", "batch_size"], "big"), "target_training.batch_size: Input should be a valid integer"),
    (edit(["target_training"], DELETE), "target_training: required field is missing"),
    (edit(["selection_policy"], "oracle"), "selection_policy: Input should be 'english_dev' or 'target_dev'"),
    (edit(["retrieval"], {"pooling": "max"}), "retrieval.pooling: Input should be 'mean' or 'cls'"),
    (edit(["resources"], {"precision": "bf16"}), "resources: precision bf16 needs gpus_per_worker > 0"),
    (edit(["resources"], {"trial_backend": "inline", "workers_per_trial": 2}), "resources: trial_backend inline runs one CPU worker"),
    (edit(["search"], {"trials_per_cell": 0}), "search.trials_per_cell: Input should be greater than or equal to 1"),
    (edit(["search"], {"scheduler": "hyperband"}), "search.scheduler: Input should be 'asha', 'median' or 'none'"),
    (edit(["base_models", 0, "name"], "tiny model!"), "base_models[0].name: String should match pattern"),
    (edit(["intermediates"], ["none", "mb_chunk", "mb_chunk"]), "intermediates: duplicate entries: mb_chunk"),
    (edit(["intermediates", 2, "tasks"], ["mb_para"]), "intermediates[2].group.tasks: List should have at least 2 items"),
    (edit(["local_paths"], {"ccgbnk": "/data/ccg"}), "local_paths.ccgbnk: unknown task 'ccgbnk'"),
    (edit(["colour"], "blue"), "colour: unknown field"),
]


@pytest.mark.parametrize("space,expected", CASES, ids=[c[1][:40] for c in CASES])
def test_malformed_space_exits_2_naming_the_field(tmp_path, space, expected):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")


def test_at_least_fifteen_malformed_cases():
    assert len(CASES) >= 15


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: t\ntargets: [mb_xnli\n")
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "not valid YAML (line" in result.output


def test_missing_file_and_non_mapping(tmp_path):
    result = CliRunner().invoke(app, ["search", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert result.exit_code == 2 and "search space file not found" in result.output
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    result = CliRunner().invoke(app, ["search", str(tmp_path / "list.yaml"), "--dry-run"])
    assert result.exit_code == 2 and "a search space is a YAML mapping, got list" in result.output


def test_cli_override_is_validated_like_the_space():
    result = CliRunner().invoke(app, ["search", "--dry-run", "--trial-backend", "inline", "--workers-per-trial", "2"])
    assert result.exit_code == 2
    assert "trial_backend inline runs one CPU worker" in result.output


def test_valid_space_dry_run_prints_plan(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(VALID))
    result = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    # 3 intermediates x 2 targets x 2 seeds = 12 cells; stage 1 trains 2 entries x 2 seeds = 4, not 4 x 2 targets.
    assert "cells: 12" in result.output
    assert "unique stage-1 checkpoints: 4 (4 to train, 0 already in the store at " in result.output
    assert "stage-2 trials: 96" in result.output  # 12 cells x the default 8 trials per cell (a range of rates)
    assert "estimated wall time on 2 CPUs" in result.output


def test_ray_client_address_is_refused_with_a_way_forward(tmp_path):
    result = CliRunner().invoke(app, ["search", "--address", "ray://127.0.0.1:10001", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "Ray Client (ray://) cannot drive a search" in result.output and "ray job submit" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "microbench-default").exists()  # refused before anything was written


def test_a_local_copy_that_is_not_here_stops_the_run_before_ray_starts(tmp_path):
    space = copy.deepcopy(VALID) | {"targets": ["mb_udpos"], "intermediates": ["none", "ccg"],
                                    "local_paths": {"ccg": str(tmp_path / "no-ccgbank")}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    planned = CliRunner().invoke(app, ["search", str(path), "--dry-run"])
    assert planned.exit_code == 0, planned.output  # planned elsewhere than where the data is: fine
    result = CliRunner().invoke(app, ["search", str(path), "--output-dir", str(tmp_path / "runs")])
    one_line_error(result, f"local_paths.ccg: '{tmp_path / 'no-ccgbank'}' does not exist", "xgrid prefetch")
    assert not (tmp_path / "runs").exists()  # refused before Ray, the folder or MLflow


def test_a_ray_client_address_is_refused_by_the_dry_run_too(tmp_path):
    result = CliRunner().invoke(app, ["search", "--dry-run", "--address", "ray://127.0.0.1:10001"])
    one_line_error(result, "Ray Client (ray://) cannot drive a search")


@pytest.mark.parametrize("uri,fragment", [
    ("bogus://x", "unsupported scheme 'bogus'"),
    ("http://127.0.0.1:9", "no MLflow server answers there"),
    ("sqlite:///{tmp}/a-file/mlflow.db", "is a file, so the store's folder"),
    ("sqlite:///{tmp}", "is a folder, not an SQLite database file"),
])
def test_a_tracking_uri_that_cannot_work_is_refused_before_anything_starts(tmp_path, uri, fragment):
    (tmp_path / "a-file").write_text("")
    uri = uri.format(tmp=tmp_path)
    result = CliRunner().invoke(app, ["search", "--tracking-uri", uri, "--output-dir", str(tmp_path / "runs")])
    one_line_error(result, f"--tracking-uri {uri}: ", fragment)
    assert not (tmp_path / "runs").exists()  # no search folder, no store, no Ray started
