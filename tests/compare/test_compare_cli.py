"""`xgrid compare` through typer's CliRunner, against the planted MLflow store."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xgrid import tracking_schema as schema
from xgrid.cli import app
from tests.assertions import one_line_error
from xgrid.cli import common
from xgrid.tracking_schema import default_tracking_uri
from tests.compare.test_runs import EXPERIMENT, TARGETS, _client, _new_run, grid_store  # noqa: F401

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(common.console, "width", 220)


def _run(*args):
    return runner.invoke(app, ["compare", *args])


def test_compare_prints_writes_and_logs(grid_store, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    result = _run(EXPERIMENT, "--tracking-uri", grid_store.uri, "--out", str(out))
    print(result.output)
    assert result.exit_code == 0, result.output
    text = result.stdout
    for expected in ("by target", "by target group", "flagged cells", "mean gain syntactic", "95% CI", "p adj",
                     "by task", "train size", "tagging", "mb_udpos", "mb_xnli", "mb_tatoeba", "(all)",
                     "still running", "logged them to MLflow run", "search s1 (the latest of 1 in the experiment)",
                     "languages zero-shot (every evaluated language but en): xa, xb", "Holm-adjusted over 3",
                     "kind is confounded with format", "Welch t-interval", "per-language rows are descriptive"):
        assert expected in text, expected
    assert "bootstrap" not in text and "permutation" not in text
    assert (out / "gain_by_target.png").stat().st_size > 1024
    for target in TARGETS:
        assert (out / f"heatmap_{target}.png").is_file()
    logged = {f.path for f in _client(grid_store.uri).list_artifacts(grid_store.parent_id, "compare")}
    assert "compare/contrast_by_target.csv" in logged and "compare/gain_by_target.png" in logged


def test_no_log_and_default_out(grid_store, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", grid_store.uri)
    result = _run(EXPERIMENT, "--no-log")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "xgrid_runs" / "compare" / EXPERIMENT / "contrast_by_group.csv").is_file()
    assert "logged them" not in result.stdout


def test_languages_and_adjust_options(grid_store, tmp_path):  # noqa: F811
    import json

    result = _run(EXPERIMENT, "--tracking-uri", grid_store.uri, "--out", str(tmp_path), "--no-log",
                  "--languages", "all", "--adjust", "bh")
    assert result.exit_code == 0, result.output
    assert "languages all evaluated languages: en, xa, xb" in result.stdout and "BH-adjusted" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["languages"]["mode"] == "all" and summary["adjust"] == "bh"
    assert summary["languages"]["by_target"]["mb_tatoeba"] == ["xa", "xb"]
    one_line_error(_run(EXPERIMENT, "--tracking-uri", grid_store.uri, "--no-log", "--languages", "xa,qq"),
                   "no run was evaluated in 'qq'", "the runs have: en, xa, xb")
    one_line_error(_run(EXPERIMENT, "--tracking-uri", grid_store.uri, "--no-log", "--adjust", "none"),
                   "--adjust 'none': use one of holm, bh")


def test_n_boot_is_accepted_and_ignored(grid_store, tmp_path):  # noqa: F811
    """Scripts written for the bootstrap still run; the output says the option does nothing now."""
    result = _run(EXPERIMENT, "--tracking-uri", grid_store.uri, "--out", str(tmp_path), "--no-log", "--n-boot", "50")
    assert result.exit_code == 0, result.output
    assert "--n-boot is ignored" in result.stdout


def test_unknown_experiment_exits_2_with_a_suggestion(grid_store):  # noqa: F811
    one_line_error(_run("xgrid-plnated", "--tracking-uri", grid_store.uri),
                    "no MLflow experiment 'xgrid-plnated'", "did you mean 'xgrid-planted'")


def test_missing_store_exits_2(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    one_line_error(_run(EXPERIMENT, "--output-dir", str(tmp_path / "nothing")), "no MLflow store")


def test_no_stage2_runs_and_no_baseline_exit_2(grid_store):  # noqa: F811
    client = _client(grid_store.uri)
    empty = client.create_experiment("cli-empty", artifact_location=(grid_store.root / "a3").as_uri())
    client.create_run(empty, tags={schema.STAGE: schema.SEARCH_STAGE})
    one_line_error(_run("cli-empty", "--tracking-uri", grid_store.uri), "no stage-2 or retrieval runs")

    no_base = client.create_experiment("cli-nobase", artifact_location=(grid_store.root / "a4").as_uri())
    for name, kind in (("mb_chunk", "syntactic"), ("mb_para", "semantic")):
        _new_run(client, no_base, {schema.STAGE: schema.STAGE2, "cell_id": name, "base_model": "m",
                                   "intermediate": name, schema.KIND_TAG: kind, "target": "mb_xnli",
                                   "target_group": "classification", "target_format": "classification",
                                   "seed": "0", "own_data": "false", schema.POLICY_TAG: "english_dev"},
                 {"accuracy.en": 70.0, "accuracy.avg": 70.0, "best.english_dev": 70.0}, {"learning_rate": 1e-5})
    one_line_error(_run("cli-nobase", "--tracking-uri", grid_store.uri), "no baseline cells")


def test_default_tracking_uri_matches_the_search(tmp_path, monkeypatch):
    """Without --tracking-uri, compare looks where `xgrid search --output-dir` writes: <output-dir>/mlflow.db."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _run("anything", "--output-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert str((tmp_path / "runs" / "mlflow.db").absolute()) in " ".join(result.output.split())
    assert default_tracking_uri(tmp_path / "runs") == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').absolute()}"
