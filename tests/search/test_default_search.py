"""`xgrid search` with no argument, as a user types it after installing: the embedded default completes and
leaves what it promises. Takes about 10 minutes on 2 CPUs, so it is marked slow (CI's second step)."""

import csv
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_default_search_completes(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xgrid.cli", "search"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=1200, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ray dashboard: http://127.0.0.1:" in result.stdout
    assert "stage 1: 16 checkpoints (16 trained, 0 reused from the store)" in result.stdout
    assert "stage 2: 54 trials (" in result.stdout and "retrieval: 18 evaluations (0 failed)" in result.stdout
    # the progress agrees with the summary: 16 checkpoints (the `none` baseline trains nothing), 18 trials a target
    assert "stage 1: 16/16 checkpoints (16 trained, 0 reused from the store, 0 failed)" in result.stdout
    assert "mb_xnli (target 1 of 4): 18/18 trials" in result.stdout
    assert "mb_tatoeba (target 4 of 4): 18/18 evaluations" in result.stdout
    (search_dir,) = (tmp_path / "xgrid_runs" / "microbench-default").iterdir()
    with open(search_dir / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 72  # 9 intermediates x 4 targets x 2 seeds
    assert all(row["avg"] for row in rows)  # every cell has a zero-shot result
    assert (search_dir / "optuna.db").is_file() and (tmp_path / "xgrid_runs" / "mlflow.db").is_file()
