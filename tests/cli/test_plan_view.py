"""`xgrid search --dry-run` as a user reads it: what the checkpoint store already holds (to train vs reused), in
the table and in the JSON, and a time estimate for each base model it can size offline, saying so where it
cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xgrid.cli import app
from xgrid.config import load_space
from xgrid.planning.plan import build_plan
from xgrid.running.store import MARKER
from xgrid.spaces import DEFAULT_SPACE
from tests.models import tiny_families

ROOT = Path(__file__).resolve().parents[2]
GHOST = "xgrid-tests/no-such-encoder"
CACHED = "xgrid-tests/cached-encoder"
NO_ESTIMATE = ("no time estimate for {}: its size is unknown offline (not in the HF cache; run "
               "`xgrid prefetch SPACE`)")


def dry_run(*args: str) -> tuple[str, dict]:
    """The table and the JSON of one dry run."""
    runner = CliRunner()
    table = runner.invoke(app, ["search", *args, "--dry-run"])
    assert table.exit_code == 0, table.output
    assert "Traceback" not in table.output
    as_json = runner.invoke(app, ["search", *args, "--dry-run", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    return table.output, json.loads(as_json.stdout)


def fill_store(root: Path, keys) -> None:
    for key in keys:
        (root / "checkpoints" / key).mkdir(parents=True)
        (root / "checkpoints" / key / MARKER).write_text(key)


@pytest.fixture(scope="module")
def default_keys(registry):
    return [j.key for j in build_plan(load_space(DEFAULT_SPACE, registry), registry).trained_jobs]


def test_a_full_store_means_nothing_to_train(tmp_path, default_keys):
    fill_store(tmp_path, default_keys)
    table, out = dry_run("--store-root", str(tmp_path))
    n = len(default_keys)
    assert f"unique stage-1 checkpoints: {n} (0 to train, {n} already in the store at {tmp_path})" in table
    assert out["totals"]["stage1_checkpoints"] == n
    assert (out["totals"]["stage1_to_train"], out["totals"]["stage1_in_store"]) == (0, n)
    assert out["totals"]["stage1_example_passes"] == 0  # the estimate counts only what is left to train
    assert out["store"] == {"root": str(tmp_path), "checked": True, "error": None}


def test_an_empty_store_means_everything_to_train_and_a_partial_one_the_rest(tmp_path, default_keys):
    n = len(default_keys)
    table, out = dry_run("--store-root", str(tmp_path / "empty"))
    assert f"unique stage-1 checkpoints: {n} ({n} to train, 0 already in the store at {tmp_path / 'empty'})" in table
    assert (out["totals"]["stage1_to_train"], out["totals"]["stage1_in_store"]) == (n, 0)
    fill_store(tmp_path / "part", default_keys[:5])
    table, out = dry_run("--store-root", str(tmp_path / "part"))
    assert f"({n - 5} to train, 5 already in the store at {tmp_path / 'part'})" in table
    assert (out["totals"]["stage1_to_train"], out["totals"]["stage1_in_store"]) == (n - 5, 5)


def test_a_store_that_cannot_be_read_is_a_note_not_a_crash(default_keys):
    n = len(default_keys)
    table, out = dry_run("--store-root", "nosuchfs://bucket/store")
    [line] = [line for line in table.splitlines() if "store not checked: " in line]
    assert line.startswith(f"unique stage-1 checkpoints: {n} ({n} to train unless already in the store; "
                           "store not checked: ")
    assert out["store"]["checked"] is False and out["store"]["error"]
    assert "\n" not in out["store"]["error"]
    assert (out["totals"]["stage1_to_train"], out["totals"]["stage1_in_store"]) == (n, None)


def write_space(path: Path, *base_models: dict) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "sized", "base_models": list(base_models), "intermediates": ["none", "mb_chunk"],
        "targets": ["mb_udpos"], "seeds": [0], "target_training": {"learning_rate": 1e-3}}))
    return path


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    return tiny_families.xlmr(tmp_path_factory.mktemp("local-xlmr") / "model")


def test_a_local_folder_gets_a_size_based_estimate_and_an_unknown_hub_id_a_note(tmp_path, local_model):
    space = write_space(tmp_path / "space.yaml", {"name": "tiny"}, {"name": "local", "source": str(local_model)},
                        {"name": "ghost", "source": GHOST})
    table, out = dry_run(str(space), "--store-root", str(tmp_path / "store"))
    lines = table.splitlines()
    assert any(line.startswith("  tiny (embedded:tiny): ~") and "on 2 CPUs" in line for line in lines), table
    assert any(line.startswith(f"  local ({local_model}, ") and "H100 GPU-hours" in line for line in lines), table
    assert f"  ghost ({GHOST}): no estimate (size unknown offline)" in lines
    assert f"note: {NO_ESTIMATE.format('ghost')}" in lines
    models = {m["model"]: m for m in out["estimates"]["models"]}
    assert models["local"]["params"] > 0 and models["local"]["h100_gpu_hours"] > 0 and models["local"]["reason"] is None
    assert models["tiny"]["cpu_seconds_on_2_cpus"] > 0
    assert models["ghost"]["params"] is None and models["ghost"]["h100_gpu_hours"] is None
    assert models["ghost"]["cpu_seconds_on_2_cpus"] is None and "unknown offline" in models["ghost"]["reason"]
    assert out["estimates"]["complete"] is False
    assert NO_ESTIMATE.format("ghost") in out["notes"]


def test_a_hub_id_whose_config_is_in_the_hf_cache_is_sized_from_it(tmp_path, local_model):
    """The HF cache's layout (hub/models--org--name/snapshots/REV/): the dry run reads it, never the network."""
    repo = tmp_path / "hf" / "hub" / f"models--{CACHED.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((local_model / "config.json").read_text())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    space = write_space(tmp_path / "space.yaml", {"name": "cached", "source": CACHED})
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "COLUMNS": "",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", str(space), "--dry-run", "--format", "json",
                             "--store-root", str(tmp_path / "store")], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    [model] = json.loads(result.stdout)["estimates"]["models"]
    assert model["params"] == tiny_parameter_count(local_model)
    assert model["h100_gpu_hours"] > 0 and model["reason"] is None


def tiny_parameter_count(folder: Path) -> int:
    from transformers import AutoModel

    return sum(p.numel() for p in AutoModel.from_pretrained(str(folder), add_pooling_layer=False).parameters())


def test_a_store_that_does_not_answer_is_left_unchecked(monkeypatch, registry):
    import threading

    from xgrid.cli.plan_view import check_store
    from xgrid.running import store as store_module

    release = threading.Event()
    monkeypatch.setattr(store_module.CheckpointStore, "has", lambda self, key: release.wait(60))
    try:
        check = check_store(build_plan(load_space(DEFAULT_SPACE, registry), registry), "/anywhere", timeout=0.2)
    finally:
        release.set()
    assert check.present is None and check.error.startswith("no answer from the store within")


def test_a_budgeted_space_dry_run_prints_its_looks_worst_case_and_expected_cost(monkeypatch):
    from xgrid.cli import common

    monkeypatch.setattr(common.console, "_width", 400)
    runner = CliRunner()
    out = runner.invoke(app, ["search", "microbench-budget", "--dry-run", "--format", "json"])
    assert out.exit_code == 0, out.output
    budget = json.loads(out.output)["budget"]
    assert budget["looks"] == [2, 4] and abs(sum(budget["levels"]) * 3 - 0.05) < 1e-9
    assert budget["worst_case"]["stage2_trials"] == 72 and budget["round_1"]["stage2_trials"] == 36
    assert budget["worst_case"]["stage1_checkpoints"] == 32 and budget["round_1"]["stage1_checkpoints"] == 16
    share = budget["expected_share"]
    assert 0.5 <= share["with_effect"] <= share["no_effect"] <= 1.0  # round 1 is half the worst case
    text = runner.invoke(app, ["search", "microbench-budget", "--dry-run"])
    assert text.exit_code == 0, text.output
    assert "budget: group-sequential, pocock alpha spending over 2 looks at 2/4 seeds" in text.output
    assert "worst case (every target to max_seeds): 32 stage-1 checkpoints, 72 stage-2 trials" in text.output
    assert "expected cost (simulated" in text.output
    plain = runner.invoke(app, ["search", "microbench-default", "--dry-run", "--format", "json"])
    assert json.loads(plain.output)["budget"] is None
