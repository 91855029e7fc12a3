"""What `xgrid search` prints at its end, from the summary functions alone (no Ray): the MLflow UI hint fits the
tracking URI (a server is opened in a browser, a store is served by `mlflow ui`), and a search with failed trials
ends with one line counting them (the exit status is 3: tests/cli/test_failed_trials.py runs a real one)."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from xgrid.cli.search_cmd import FAILED_TRIALS_EXIT, failed_line, summary_lines, ui_hint


@pytest.mark.parametrize("uri, url", [
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://mlflow.example.org/", "https://mlflow.example.org/"),
    ("HTTP://mlflow:5000", "http://mlflow:5000"),
    # the browser asks for the credentials; the hint never carries them
    ("https://alice:s3cret@mlflow.example.org:443/mlflow", "https://mlflow.example.org:443/mlflow"),
])
def test_a_tracking_server_is_opened_in_a_browser_not_given_to_mlflow_ui(uri, url):
    hint = ui_hint(uri)
    assert hint.startswith(f"open {url} in a browser")
    assert "mlflow ui" not in hint and "--backend-store-uri" not in hint and "s3cret" not in hint


@pytest.mark.parametrize("uri", ["sqlite:////tmp/runs/mlflow.db", "file:///tmp/mlruns",
                                 "sqlite:////tmp/with space/mlflow.db"])
def test_a_local_store_is_served_by_mlflow_ui_runnable_as_printed(uri):
    hint = ui_hint(uri)
    assert shlex.split(hint) == ["mlflow", "ui", "--backend-store-uri", uri]


def record(trains: bool, status: str):
    return SimpleNamespace(cell=SimpleNamespace(trains=trains), status=status, error="boom" if status == "failed" else None)


def outcome(records: dict[str, list]):
    return SimpleNamespace(records=records, search_dir=Path("/runs/space/20260101-000000-000000"),
                           stage1_trained=0, stage1_reused=0, seconds=1.0, rounds=None)


def test_the_summary_of_a_search_on_a_server_points_at_its_url():
    tracker = SimpleNamespace(tracking_uri="http://mlflow.internal:5000", experiment_id="1", writer=None)
    lines = summary_lines(outcome({}), [], tracker, "exp")
    (ui,) = [line for line in lines if line.strip().startswith("UI:")]
    assert ui.strip().startswith("UI: open http://mlflow.internal:5000 in a browser")


def test_failed_trials_and_evaluations_are_counted_in_one_line():
    records = {"t": [record(True, "completed"), record(True, "failed"), record(True, "failed"), record(True, "stopped")],
               "r": [record(False, "completed"), record(False, "failed")]}
    line = failed_line(outcome(records))
    assert line.startswith("2 of 4 stage-2 trials and 1 of 2 retrieval evaluations failed")
    assert "/runs/space/20260101-000000-000000/results.json" in line
    assert failed_line(outcome({"t": [record(True, "failed")]})).startswith("1 of 1 stage-2 trials failed")
    assert failed_line(outcome({"r": [record(False, "failed"), record(False, "completed")]})).startswith(
        "1 of 2 retrieval evaluations failed")


def test_a_search_without_failures_has_no_failure_line():
    assert failed_line(outcome({"t": [record(True, "completed"), record(True, "stopped")],
                                "r": [record(False, "completed")]})) is None
    assert failed_line(outcome({})) is None
    assert FAILED_TRIALS_EXIT not in (0, 1, 2, 130, 143)  # its own status: neither success, a crash, bad input nor a stop
