"""What a search leaves behind: every trial (results.json) and the best trial of every cell (results.csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from xgrid.config import SearchSpace
from xgrid.events import TrialRecord, selected_trials
from xgrid.tracking_schema import AGGREGATES, ENGLISH_DEV, best_metric, final_metric_name


def best_per_cell(records: list[TrialRecord], space: SearchSpace) -> list[dict[str, Any]]:
    """The selected trial of each cell (`xgrid.events.selected_trials`), with the cell's trial counts."""
    selected = selected_trials(records, space.selection_policy)
    by_cell: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_cell.setdefault(record.cell.id, []).append(record)
    rows = []
    for trials in by_cell.values():
        cell = trials[0].cell
        metric = cell.metric
        average, average_xling = (final_metric_name(metric, a, space.selection_policy, space.selection_policy)
                                  for a in AGGREGATES)
        row: dict[str, Any] = cell.tags() | {"trials": len(trials),
                                             "stopped": sum(t.status == "stopped" for t in trials),
                                             "failed": sum(t.status == "failed" for t in trials), "metric": metric}
        best = selected.get(cell.id)
        if best is not None:
            row |= {"trial_id": best.trial_id, "learning_rate": best.learning_rate,
                    ENGLISH_DEV: best.metrics.get(best_metric(ENGLISH_DEV)),
                    "avg": best.metrics.get(average), "avg_xling": best.metrics.get(average_xling)}
            row |= {k: v for k, v in best.metrics.items() if k.startswith(f"{metric}.") and k.count(".") == 1}
        rows.append(row)
    return rows


def write_results(search_dir: Path, records: dict[str, list[TrialRecord]], best: list[dict[str, Any]]) -> None:
    trials = [{"trial_id": r.trial_id, "cell": r.cell.tags(), "learning_rate": r.learning_rate,
               "status": r.status, "error": r.error, "metrics": r.metrics} for rs in records.values() for r in rs]
    (search_dir / "results.json").write_text(json.dumps({"trials": trials, "best": best}, indent=1, default=str))
    columns = list(dict.fromkeys(k for row in best for k in row))
    with open(search_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(best)
