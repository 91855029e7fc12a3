"""A real `xgrid search` in which trials really fail (mb_xquad at max_length 12: the question leaves no room for
the context, so every mb_xquad trial raises in its worker) exits 3, not 0, and its last line counts the failed
trials; the other target's trials complete and the results are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "failing-trials",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none"],
    "targets": ["mb_xquad", "mb_udpos"],
    "seeds": [0],
    "target_training": {"learning_rate": {"values": [0.003, 0.01]}, "epochs": 1, "max_length": 12,
                        "max_train_examples": 60, "max_eval_examples": 20},
    "search": {"trials_per_cell": 2, "scheduler": "none", "max_failures": 0},  # no retries: a failure is final
    "resources": {"max_concurrent_trials": 2},
}


@pytest.mark.slow  # a real search (~60 s on 2 CPUs)
def test_failed_trials_make_a_non_zero_exit_with_their_count(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    result = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", "space.yaml", "--output-dir", "runs"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    (search_dir,) = (tmp_path / "runs" / "failing-trials").iterdir()
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"error: 2 of 4 stage-2 trials failed; the search ran to its end (their errors are above, "
                    f"every trial is in {search_dir}/results.json)"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "2 trial(s) failed:" in result.stdout and "leaves no room for the context" in result.stdout
    assert "stage 2: 4 trials (2 completed, 0 stopped early, 2 failed)" in result.stdout
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    by_target = {t["cell"]["target"]: [] for t in trials}
    for t in trials:
        by_target[t["cell"]["target"]].append(t["status"])
    assert by_target == {"mb_xquad": ["failed", "failed"], "mb_udpos": ["completed", "completed"]}
    assert json.loads((search_dir / "search_state.json").read_text())["status"] == "finished"
