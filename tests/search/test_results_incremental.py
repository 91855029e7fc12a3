"""ResultsFile re-encodes only the trials and cells that changed since its last write; the files it writes are
byte for byte what encoding every trial again writes (`json.dumps(..., indent=1, default=str)`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from xgrid.config import parse_space
from xgrid.events import TrialRecord
from xgrid.planning.plan import build_plan
from xgrid.search.results import ResultsFile, best_per_cell
from xgrid.tasks import default_registry

SPACE = {"name": "results-incremental", "base_models": [{"name": "tiny"}],
         "intermediates": ["none", "mb_ccg", "mb_para"], "targets": ["mb_xnli", "mb_udpos"], "seeds": [0, 1],
         "target_training": {"learning_rate": {"low": 0.001, "high": 0.01}},
         "search": {"trials_per_cell": 3, "scheduler": "asha"}}


def _reference(folder: Path, results: ResultsFile) -> tuple[str, str]:
    """What the files were before: every trial encoded again, the best rows from every trial (results.csv is
    checked here)."""
    records = results.by_target()
    best = best_per_cell([r for rs in records.values() for r in rs], results.space)
    trials = [{"trial_id": r.trial_id, "cell": r.cell.tags(), "learning_rate": r.learning_rate, "status": r.status,
               "error": r.error, "metrics": r.metrics} for rs in records.values() for r in rs]
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for row in best for k in row)))
    writer.writeheader()
    writer.writerows(best)
    assert (folder / "results.csv").open(newline="").read() == table.getvalue()  # results.csv as before, too
    return json.dumps({"trials": trials, "best": best}, indent=1, default=str), best


def test_every_write_equals_a_full_rewrite(tmp_path):
    registry = default_registry()
    plan = build_plan(parse_space(SPACE, registry), registry)
    results = ResultsFile(tmp_path, plan.space)
    assert (results.write(), json.loads((tmp_path / "results.json").read_text())) == ([], {"trials": [], "best": []})
    assert (tmp_path / "results.json").read_text() == _reference(tmp_path, results)[0]
    n = 0
    for cell in reversed(plan.cells):  # the second target's cells first: the files group by the space's order
        for t in range(3):
            n += 1
            record = TrialRecord(f"t{n:03d}", cell, 0.001 * (t + 1))
            results.trial_finished(record)  # no metrics yet
            metric = f"{cell.metric}.avg"
            record.metrics = {"best.english_dev": 50.0 + (n * 7) % 11, metric: 40.0 + n, f"{cell.metric}.en": 60.0,
                              "odd": float("nan"), "big": float("inf"), "path": Path("/x"), "none": None}
            record.status = ["completed", "stopped", "failed"][n % 3] if n % 4 else "completed"
            record.error = "boom\nline two" if record.status == "failed" else None
            results.trial_finished(record)
            text, best = _reference(tmp_path, results)
            assert (tmp_path / "results.json").read_text() == text
            assert results.write() == best
    # A trial heard again with a new record (a resumed search, a cut-off trial closed) replaces the old one.
    first = results.records["t001"]
    again = TrialRecord("t001", first.cell, first.learning_rate, status="cut_off", metrics={"x": 1.0})
    results.trial_finished(again)
    text, best = _reference(tmp_path, results)
    assert (tmp_path / "results.json").read_text() == text and results.write() == best
    csv_rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(plan.cells)
    # The rows handed back are copies: changing one does not change the next write.
    results.write()[0]["trials"] = -1
    assert results.write() == best
