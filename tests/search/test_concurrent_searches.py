"""Two searches started at once on one machine with the same output dir (so the same store and the same MLflow
SQLite file): both finish, each in its own search folder, with its own local Ray and dashboard; the one
stage-1 key both train is committed once (the other copy discarded, no staging folder left, the winner passes
its manifest); MLflow holds both parents FINISHED. On the original main one of them died with an alembic
migration traceback (both creating the SQLite store at once) and left an empty folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.running.store import QUARANTINE, CheckpointStore
from xgrid.search import runner
from xgrid.search.options import SearchOptions
from xgrid.search.status import FOLDER_STAMP

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "concurrent",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 100,
                              "max_eval_examples": 20},
    "target_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 60,
                        "max_eval_examples": 20},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


def test_search_folders_started_in_the_same_microsecond_are_distinct_timestamps(tmp_path, registry,
                                                                                  monkeypatch):
    frozen = datetime(2026, 1, 2, 3, 4, 5, 999_999)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(runner, "datetime", Clock)
    plan = build_plan(parse_space(SPACE, registry), registry)
    options = SearchOptions(output_root=tmp_path)
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(runner.new_search_dir(options, plan)))
               for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 20
    stamps = sorted(datetime.strptime(f.name, FOLDER_STAMP) for f in folders)  # `xgrid status` reads them back
    assert stamps[0] == frozen and (stamps[-1] - frozen).microseconds == 19  # the next free microseconds


def start_search(folder: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "xgrid.cli", "search", "space.yaml", "--output-dir", "runs"],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Two searches at once on 2 CPUs take about two minutes.
@pytest.mark.integration
@pytest.mark.slow
def test_two_searches_started_at_once_with_one_output_dir_both_finish(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    processes = [start_search(tmp_path, name) for name in ("a", "b")]  # together: nothing exists yet
    outputs = [p.communicate(timeout=900) for p in processes]
    results = [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]
    finished = [(out, err) for code, out, err in results if code == 0]
    for code, out, err in results:
        assert "Traceback" not in out + err, err[-3000:]
        if code != 0:  # what the spec also allows: refused, with one clear line and exit 2
            assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err[-3000:]
    # A refusal is allowed for one of them, not both. (A busy machine can make a local Ray miss its own fixed
    # 30 s start-up wait; that one is refused with "Ray did not start locally" and writes nothing.)
    assert finished, [err[-1000:] for _, _, err in results]

    runs = tmp_path / "runs"
    folders = sorted((runs / "concurrent").iterdir())
    assert len(folders) == len(finished)  # one search folder each; a refused one writes none
    for folder in folders:
        (trial,) = json.loads((folder / "results.json").read_text())["trials"]
        assert trial["status"] == "completed"
    # Each printed its own folder and its own dashboard (two local Rays: the second takes the next free port).
    printed = [re.search(r"Results: (\S+)/results\.csv", out).group(1) for out, _ in finished]
    assert sorted(printed) == [str(f) for f in folders]
    dashboards = [re.search(r"Ray dashboard: (\S+)", out) for out, _ in finished]
    assert all(dashboards) and len({d.group(1) for d in dashboards}) == len(finished)
    # The store: one committed, verified copy of the key both trained, and of the tiny model both built (it is
    # stored like any checkpoint, so every node loads the same one); no staging folder, nothing quarantined.
    tiny, checkpoint = sorted((runs / "store" / "checkpoints").iterdir(), key=lambda p: not p.name.startswith("tiny-"))
    assert tiny.name.startswith("tiny-") and not checkpoint.name.startswith((".", "tiny-"))
    for folder in (tiny, checkpoint):
        assert CheckpointStore(runs / "store").find(folder.name) == folder
    assert not (runs / "store" / QUARANTINE).exists()
    # MLflow: one SQLite store, both searches' parents FINISHED, nothing left RUNNING.
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "concurrent"]
    runs_ = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs_ if r.data.tags.get("stage") == "search"]
    assert sorted(p.data.tags["search_id"] for p in parents) == [f.name for f in folders]
    assert {p.info.status for p in parents} == {"FINISHED"}
    assert not [r for r in runs_ if r.info.status == "RUNNING"]
