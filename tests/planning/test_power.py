"""Power before spending: the dry run predicts the width of the interval compare will print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xgrid.cli import app, common
from xgrid.statistics.simulate import Design, coverage
from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.planning.power import MAX_TASKS, expected_half_width, power_lines, tasks_for_half_width
from xgrid.tasks import default_registry

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
REGISTRY = default_registry()
runner = CliRunner()


@pytest.mark.parametrize("n, task_sd, seed_sd", [(2, 2.0, 1.0), (3, 1.0, 1.5), (5, 3.0, 0.5), (10, 2.0, 1.0)])
def test_predicted_half_width_is_what_compare_gets(n, task_sd, seed_sd):
    """The chi-square shortcut against whole grids analysed by compare's own code (zero-shot, gains, Welch)."""
    simulated = coverage(Design(n, n, 3, task_sd, seed_sd, resid_sd=0.0, baseline_sd=0.0), 1500, seed=n)
    predicted = expected_half_width(n, n, 3, task_sd, seed_sd)
    assert predicted == pytest.approx(simulated["half_width"], rel=0.08)


def test_half_width_shrinks_with_tasks_and_seeds_only_shrink_the_seed_part():
    widths = [expected_half_width(n, n, 3, 2.0, 1.0) for n in (2, 3, 5, 10, 20)]
    assert widths == sorted(widths, reverse=True)
    assert expected_half_width(1, 5, 3, 2.0, 1.0) == float("inf")  # one task: no interval at all
    many_seeds = expected_half_width(5, 5, 1000, 2.0, 1.0)
    assert expected_half_width(5, 5, 3, 2.0, 1.0) > many_seeds > expected_half_width(5, 5, 3, 2.0, 0.0) * 0.99


def test_tasks_needed_is_the_first_design_narrow_enough():
    n = tasks_for_half_width(2.0, 3, 2.0, 1.0)
    assert n is not None
    assert expected_half_width(n, n, 3, 2.0, 1.0) <= 2.0 < expected_half_width(n - 1, n - 1, 3, 2.0, 1.0)
    assert tasks_for_half_width(0.01, 3, 50.0, 1.0) is None  # out of reach within MAX_TASKS
    assert MAX_TASKS >= 100


def _space(**changes):
    data = yaml.safe_load((SPACES / "microbench_default.yaml").read_text())
    data.update(changes)
    return parse_space(data, REGISTRY)


def test_power_lines_count_each_kind_per_target_and_use_the_space_assumptions():
    space = _space(power={"task_sd": 1.0, "seed_sd": 0.5, "half_width": 5.0,
                          "per_target": {"mb_udpos": {"task_sd": 4.0}}})
    lines = {line.target: line for line in power_lines(build_plan(space, REGISTRY))}
    assert set(lines) == set(space.targets)
    syntactic = {i for i in space.intermediates if isinstance(i, str) and i != "none"
                 and REGISTRY.get(i).kind == "syntactic"}
    xnli = lines["mb_xnli"]
    assert xnli.n_syntactic == len(syntactic) and xnli.seeds == len(space.seeds)
    assert (xnli.task_sd, xnli.seed_sd, xnli.wanted) == (1.0, 0.5, 5.0)
    assert lines["mb_udpos"].task_sd == 4.0 and lines["mb_udpos"].seed_sd == 0.5
    assert lines["mb_udpos"].half_width > xnli.half_width
    assert xnli.half_width == pytest.approx(expected_half_width(xnli.n_syntactic, xnli.n_semantic, len(space.seeds),
                                                                1.0, 0.5))


def test_own_data_cells_are_not_counted():
    """udpos_en is UD-POS's own English data: compare leaves it out, so the power line does too."""
    data = yaml.safe_load((SPACES / "xtreme_r_syntactic_vs_semantic.yaml").read_text())
    data["intermediates"] = ["none", "udpos_en", "chunk", "ud_deprel", "mnli", "squad"]
    data["targets"] = ["udpos", "xnli"]
    data.pop("target_overrides", None)
    data.pop("local_paths", None)
    lines = {l.target: l for l in power_lines(build_plan(parse_space(data, REGISTRY), REGISTRY))}
    assert lines["udpos"].n_syntactic == 2 and lines["xnli"].n_syntactic == 3


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(common.console, "_width", 400)


@pytest.mark.parametrize("space", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_dry_run_prints_a_power_line_per_target(space, wide_console):
    result = runner.invoke(app, ["search", str(SPACES / space), "--dry-run"])
    assert result.exit_code == 0, result.output
    loaded = yaml.safe_load((SPACES / space).read_text())
    power = [line for line in result.output.splitlines() if line.strip().startswith("power ")]
    assert len(power) == len(loaded["targets"])
    for line in power:
        assert "expected 95% half-width" in line or "no interval" in line
        assert "tasks per kind" in line
    if any("cannot answer" in line for line in power):
        assert "this space cannot answer its own question" in result.output


def test_dry_run_json_has_the_power_and_a_small_space_is_told(tmp_path, wide_console):
    data = yaml.safe_load((SPACES / "microbench_default.yaml").read_text())
    data["intermediates"] = ["none", "mb_chunk", "mb_deprel", "mb_para", "mb_qa"]
    data["power"] = {"task_sd": 2.0, "seed_sd": 1.0, "half_width": 2.0}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["search", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "this space cannot answer its own question at +-2 points" in result.output
    out = runner.invoke(app, ["search", str(path), "--dry-run", "--format", "json"])
    assert out.exit_code == 0, out.output
    power = json.loads(out.output)["power"]
    assert [p["target"] for p in power] == data["targets"]
    assert all(p["n_syntactic"] == 2 and p["n_semantic"] == 2 and not p["can_answer"] for p in power)
    assert all(p["tasks_needed"] > 2 for p in power)
