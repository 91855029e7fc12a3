"""`xgrid status` through typer's CliRunner, on search folders built as in tests/search/test_status.py."""

from __future__ import annotations

import json
import re
import socket

import pytest
from typer.testing import CliRunner

from xgrid.cli import app, common
from tests.assertions import one_line_error
from tests.search.test_status import STAMP, new_search, optuna_search, plan, tracked_search  # noqa: F401

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(common.console, "width", 260)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("XGRID_OUTPUT_DIR", raising=False)


def _run(*args):
    return runner.invoke(app, ["status", *args])


def test_the_latest_search_under_the_output_dir(tmp_path, plan):  # noqa: F811
    root = tmp_path / "xgrid_runs"
    new_search(root, plan, "20240101-000000-000000")  # older, nothing in it
    search_dir, _ = tracked_search(root, plan)  # STAMP: 2025
    result = _run("--output-dir", str(root))
    assert result.exit_code == 0, result.output
    text = result.stdout
    print(text)
    assert f"folder {search_dir}" in text and "state running" in text and "stage 1 1/1 trained, done" in text
    assert "targets of " + STAMP in text
    udpos = next(line for line in text.splitlines() if line.startswith("│ mb_udpos"))
    cells = [c.strip() for c in udpos.split("│")[1:-1]]
    assert cells[:10] == ["mb_udpos", "tagging", "running", "2/2", "6 (3/cell)", "2", "1", "1", "1", "1"]
    assert cells[10].startswith("60.00 best.english_dev (f1.avg 55.00, mb_chunk s0, lr 0.002)")
    spent, median, eta, source = cells[11:]
    assert re.fullmatch(r"3\ds", spent)  # 30 s since the first trial started (plus this test's own seconds)
    assert (median, eta, source) == ("10s", "10s", "mlflow")
    assert "retrieval (scored)" in text and "MLflow sqlite:///" in text


def test_json(tmp_path, plan, monkeypatch):  # noqa: F811
    root = tmp_path / "xgrid_runs"
    search_dir, _ = tracked_search(root, plan)
    monkeypatch.setenv("XGRID_OUTPUT_DIR", str(root))
    result = _run("--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["search_dir"] == str(search_dir) and data["state"] == "running" and data["mlflow_read"]
    udpos = next(t for t in data["targets"] if t["target"] == "mb_udpos")
    assert (udpos["completed"], udpos["stopped"], udpos["failed"], udpos["running"], udpos["left"]) == (2, 1, 1, 1, 1)
    assert udpos["best"]["score"] == 60.0 and data["stage1"]["summary"] == "1/1 trained, done"
    assert data["started_at"] == "2025-01-01T12:00:00"


def test_a_search_dir_given_by_path_reads_the_store_beside_it(tmp_path, plan, monkeypatch):  # noqa: F811
    search_dir, _ = tracked_search(tmp_path / "elsewhere", plan)
    monkeypatch.chdir(tmp_path)  # ./xgrid_runs does not exist: the store is <search_dir>/../../mlflow.db
    result = _run(str(search_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mlflow_read"]


def test_not_a_search_folder_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(_run(str(tmp_path / "empty")), str(tmp_path / "empty"), "not a search folder")
    one_line_error(_run(str(tmp_path / "missing")), str(tmp_path / "missing"), "does not exist")


def test_no_search_folder_at_all_names_the_output_dir(tmp_path):
    one_line_error(_run("--output-dir", str(tmp_path / "runs")), "no search folder under", str(tmp_path / "runs"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)  # MLflow's default HTTP retries would take minutes: the command must not wait for them
def test_an_unreachable_mlflow_is_a_note(tmp_path, plan):  # noqa: F811
    root = tmp_path / "xgrid_runs"
    search_dir = optuna_search(root, plan)
    result = _run(str(search_dir), "--tracking-uri", f"http://127.0.0.1:{_closed_port()}")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Traceback" not in result.output and "MLflow not read" in text
    assert "note: MLflow was not read (http://127.0.0.1:" in text and "counts from optuna.journal" in text
    udpos = next(line for line in text.splitlines() if line.startswith("│ mb_udpos"))
    assert [c.strip() for c in udpos.split("│")[1:-1]][5:10] == ["1", "1", "1", "1", "2"]
