"""A search of any size written into a local MLflow store (SQLite) in bulk, exactly as xgrid's tracker writes it.

The runs come from xgrid's own `TrackingListener` hearing a search's events (stage-1 trainings, stage-2 trials
with their per-epoch reports, early stops, the selected tag), with the phases' reports from
`scale_fakes.fake_result`; only the writer differs: `BulkWriter` keeps the rows in memory and inserts them into
MLflow's tables at the end, in a few `executemany`s, after MLflow itself created the schema and the experiment.
Writing 10,000 runs through MLflow's client takes many minutes; this takes seconds. `tests/compare/
test_bulk_store.py` checks that `xgrid compare` reads a bulk-written search back exactly as the same search
written through MLflow's client.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from xgrid import tracking_schema as schema

INTERMEDIATES = ["none", "mb_ccg", "mb_chunk", "mb_deprel", "mb_depth", "mb_xpos",  # syntactic
                 "mb_choice", "mb_entail", "mb_para", "mb_qa", "mb_semtag"]  # semantic
TARGETS = ["mb_xnli", "mb_udpos", "mb_xquad"]


def space_dict(name: str, seeds: int, trials_per_cell: int, intermediates=INTERMEDIATES, targets=TARGETS,
               base_models=1, epochs: int = 4) -> dict[str, Any]:
    models = [{"name": "tiny"}] + [{"name": f"tiny{i}", "source": "embedded:tiny"} for i in range(1, base_models)]
    return {"name": name, "base_models": models, "intermediates": list(intermediates), "targets": list(targets),
            "seeds": list(range(seeds)),
            "intermediate_training": {"learning_rate": 0.002, "epochs": 3, "batch_size": 32, "max_length": 64},
            "target_training": {"learning_rate": {"low": 0.0005, "high": 0.005, "log": True}, "epochs": epochs,
                                "batch_size": 32, "max_length": 64},
            "search": {"trials_per_cell": trials_per_cell, "scheduler": "asha"},
            "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "max_concurrent_trials": 2}}


def seeds_for(runs: int, trials_per_cell: int, intermediates=INTERMEDIATES, targets=TARGETS) -> int:
    """The seeds that give the nearest number of stage-2 runs to `runs`."""
    return max(1, round(runs / (trials_per_cell * len(intermediates) * len(targets))))


class BulkWriter:
    """A `RunWriter` that keeps every row in memory; `flush()` inserts them into MLflow's SQLite tables."""

    def __init__(self, db: Path, experiment: str, artifact_root: Path):
        from mlflow import MlflowClient

        self.db = Path(db)
        self.tracking_uri = f"sqlite:///{self.db}"
        client = MlflowClient(self.tracking_uri)  # MLflow creates (migrates) the schema
        found = client.get_experiment_by_name(experiment)
        self.experiment_id = found.experiment_id if found else client.create_experiment(
            experiment, artifact_location=(artifact_root / experiment).as_uri())
        self.artifact_location = client.get_experiment(self.experiment_id).artifact_location
        self.clock = 1_790_000_000_000  # ms; every write advances it, as time passes in a real search
        self.runs: dict[str, dict[str, Any]] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.params: dict[tuple[str, str], str] = {}
        self.metrics: list[tuple] = []
        self.latest: dict[tuple[str, str], tuple[int, int, float]] = {}  # (run, key) -> (step, timestamp, value)

    def _tick(self) -> int:
        self.clock += 7
        return self.clock

    def create_run(self, name: str, tags: dict[str, str]) -> str:
        run_id = uuid.uuid4().hex
        self.runs[run_id] = {"name": name, "status": "RUNNING", "start_time": self._tick(), "end_time": None}
        self.set_tags(run_id, {"mlflow.runName": name} | tags)
        return run_id

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        for key, value in params.items():
            self.params[(run_id, key)] = str(value)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = self._tick()
        for key, value in metrics.items():
            value = float(value)
            nan = math.isnan(value)
            stored = 0.0 if nan else value
            self.metrics.append((key, stored, now, run_id, step, int(nan)))
            # MLflow's latest: the highest step, then the latest timestamp, then the highest value
            mine = (step, now, stored)
            if (run_id, key) not in self.latest or mine > self.latest[(run_id, key)][:3]:
                self.latest[(run_id, key)] = (*mine, int(nan))

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.tags[(run_id, key)] = str(value)

    def log_artifact(self, run_id: str, path, folder: str | None = None) -> None:
        pass  # compare reads no artifact of a search

    def end_run(self, run_id: str, status: str) -> None:
        self.runs[run_id] |= {"status": status, "end_time": self._tick()}

    def reopen_run(self, run_id: str) -> None:
        self.runs[run_id]["status"] = "RUNNING"

    def flush(self) -> None:
        con = sqlite3.connect(self.db)
        try:
            with con:
                con.executemany(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,"
                    " start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
                    " VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', ?, ?, ?, '', 'active', ?, ?)",
                    [(rid, r["name"], r["status"], r["start_time"], r["end_time"],
                      f"{self.artifact_location}/{rid}/artifacts", int(self.experiment_id))
                     for rid, r in self.runs.items()])
                con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                                [(k, v, rid) for (rid, k), v in self.tags.items()])
                con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                                [(k, v, rid) for (rid, k), v in self.params.items()])
                con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                                " VALUES (?, ?, ?, ?, ?, ?)", self.metrics)
                con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
                                " VALUES (?, ?, ?, ?, ?, ?)",
                                [(k, v, ts, step, nan, rid) for (rid, k), (step, ts, v, nan) in self.latest.items()])
        finally:
            con.close()
        self.runs.clear(); self.tags.clear(); self.params.clear(); self.metrics.clear(); self.latest.clear()


def drive_search(writer, space: dict[str, Any], search_dir: Path, stop_every: int = 5, others=None,
                 save_state: bool = False) -> int:
    """Play a whole search's events to xgrid's TrackingListener writing through `writer`: every stage-1 job
    trained, every cell's trials (every `stop_every`-th stopped early after one epoch), each target's selected
    tags. `others(space)`: more listeners to hear the same events first (as the runner's results file does);
    `save_state`: the tracker writes search_state.json as in a search. Returns the number of stage-2 runs."""
    from xgrid.config import parse_space
    from xgrid.events import Listeners, TrialRecord
    from xgrid.planning.plan import build_plan
    from xgrid.running.requests import stage1_request, stage2_request
    from xgrid.tasks import default_registry
    from xgrid.tracking.listener import TrackingListener
    from xgrid.tracking_schema import SECONDS

    from scale_fakes import fake_result

    registry = default_registry()
    parsed = parse_space(space, registry)
    plan = build_plan(parsed, registry)
    search_dir.mkdir(parents=True, exist_ok=True)
    tracker = TrackingListener(writer)
    if not save_state:
        tracker._save = lambda: None  # search_state.json is for a resume; nothing resumes this
    listener = Listeners(*(others(parsed) if others else ()), tracker)
    listener.search_started(plan, str(search_dir))
    for job in plan.trained_jobs:
        listener.stage1_started(job)
        result, _ = fake_result(stage1_request(job, parsed, "base"))
        listener.stage1_finished(job, True, result.summary())
    n = 0
    for target in parsed.targets:
        records = []
        for cell in (c for c in plan.cells if c.target == target):
            for t in range(parsed.search.trials_per_cell):
                lr = 0.0005 * (10 ** ((t + 0.5) / parsed.search.trials_per_cell))
                n += 1
                record = TrialRecord(f"{cell.id[:8]}_{t:05d}", cell, lr)
                listener.trial_started(record)
                result, selected = fake_result(stage2_request(cell, lr, parsed, cell.stage1_key))
                stopped = stop_every and n % stop_every == 0
                history = result.history[:1] if stopped else result.history
                for record_metrics in history[:-1] if not stopped else history:
                    listener.trial_result(record, record_metrics)
                    record.history.append(record_metrics)
                if stopped:
                    record.status, record.metrics = "stopped", dict(history[-1])
                else:
                    record.metrics = (result.history[-1] | selected | result.flat_metrics()
                                      | {SECONDS: 12.5 + t})
                    listener.trial_result(record, record.metrics)
                    record.history.append(result.history[-1])
                listener.trial_finished(record)
                records.append(record)
        listener.target_finished(target, records)
    listener.search_finished("FINISHED")
    return n
