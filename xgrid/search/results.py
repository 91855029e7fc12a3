"""What a search leaves behind: every trial (results.json) and the best trial of every cell (results.csv),
rewritten after every finished trial (`ResultsFile`) so that a driver killed at any moment loses at most the
trials it had in flight. Each file is replaced atomically: a reader never sees half of one."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from xgrid.config import SearchSpace
from xgrid.events import SearchListener, TrialRecord, selected_trials
from xgrid.folder_state import atomic_write
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


def _trial(record: TrialRecord) -> dict[str, Any]:
    return {"trial_id": record.trial_id, "cell": record.cell.tags(), "learning_rate": record.learning_rate,
            "status": record.status, "error": record.error, "metrics": record.metrics}


def _nested(value: Any, depth: int) -> str:
    """`value` as `json.dumps(..., indent=1, default=str)` writes it `depth` levels down in a document."""
    return json.dumps(value, indent=1, default=str).replace("\n", "\n" + " " * depth)


def _listed(encoded: list[str], depth: int) -> str:
    """A list of values already encoded `depth` levels down, as json.dumps(..., indent=1) writes it."""
    return "[\n" + " " * depth + (",\n" + " " * depth).join(encoded) + "\n" + " " * (depth - 1) + "]" if encoded else "[]"


def _document(trials: list[str], best: list[dict[str, Any]], best_encoded: list[str] | None = None) -> str:
    """`json.dumps({"trials": ..., "best": best}, indent=1, default=str)`, from each trial already encoded
    (`_nested(trial, 2)`): the encoder with an indent is pure Python, and re-encoding every trial of a search
    after each one finishes grew with the search."""
    rows = best_encoded if best_encoded is not None else [_nested(row, 2) for row in best]
    return '{\n "trials": ' + _listed(trials, 2) + ',\n "best": ' + _listed(rows, 2) + "\n}"


def write_results(search_dir: Path, records: dict[str, list[TrialRecord]], best: list[dict[str, Any]],
                  encoded: list[str] | None = None, best_encoded: list[str] | None = None,
                  csv_line=None) -> None:
    """results.json and results.csv. `encoded`: the trials of `records` already encoded (`_nested(_trial(r), 2)`),
    `best_encoded` the rows of `best` (`_nested(row, 2)`), `csv_line(index, columns)` row `index` of `best` as
    results.csv writes it: what a caller kept from its last write."""
    trials = encoded if encoded is not None else [_nested(_trial(r), 2) for rs in records.values() for r in rs]
    atomic_write(search_dir / "results.json", _document(trials, best, best_encoded))
    columns = list(dict.fromkeys(k for row in best for k in row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    if csv_line is None:
        writer.writerows(best)
    else:
        table.write("".join(csv_line(i, columns) for i in range(len(best))))
    atomic_write(search_dir / "results.csv", table.getvalue())


def _csv_line(row: dict[str, Any], columns: list[str]) -> str:
    table = io.StringIO(newline="")
    csv.DictWriter(table, fieldnames=columns).writerow(row)
    return table.getvalue()


class ResultsFile(SearchListener):
    """Every trial of the search, old and new, each once (by trial id), written out after every finished trial.
    `previous` are the trials an earlier driver of the same folder finished (a resumed search)."""

    def __init__(self, search_dir: Path, space: SearchSpace, previous: dict[str, list[TrialRecord]] | None = None):
        self.search_dir, self.space = Path(search_dir), space
        self.records: dict[str, TrialRecord] = {r.trial_id: r for rs in (previous or {}).values() for r in rs}
        # What the last write computed, per trial (its JSON) and per cell (its results.csv row), with the state it
        # was computed from: a write redoes only the trials and cells that changed since.
        self._encoded: dict[str, tuple[tuple, str]] = {}
        self._rows: dict[str, tuple[tuple, dict[str, Any]]] = {}

    def trial_finished(self, record: TrialRecord) -> None:
        self.records[record.trial_id] = record
        self.write()

    def add(self, records: list[TrialRecord]) -> None:
        """Trials ended without a `trial_finished` (cut off by an interrupt)."""
        for record in records:
            self.records.setdefault(record.trial_id, record)

    def by_target(self) -> dict[str, list[TrialRecord]]:
        grouped: dict[str, list[TrialRecord]] = {target: [] for target in self.space.targets}
        for record in self.records.values():
            grouped.setdefault(record.cell.target, []).append(record)
        return grouped

    def write(self) -> list[dict[str, Any]]:
        """Write both files; returns the best trial of every cell (the same as `best_per_cell` of every trial)."""
        records = self.by_target()
        encoded, cells = [], {}
        for rs in records.values():
            for record in rs:
                key = _state(record)
                known = self._encoded.get(record.trial_id)
                if known is None or known[0] != key:
                    known = self._encoded[record.trial_id] = (key, _nested(_trial(record), 2))
                encoded.append(known[1])
                cells.setdefault(record.cell.id, []).append((record, key))
        best, rows = [], []
        for cell_id, members in cells.items():
            key = tuple(k for _, k in members)
            known = self._rows.get(cell_id)
            if known is None or known[0] != key:
                (row,) = best_per_cell([r for r, _ in members], self.space)
                known = self._rows[cell_id] = (key, row, _nested(row, 2), {})
            best.append(dict(known[1]))
            rows.append(known)

        def csv_line(index: int, columns: list[str]) -> str:
            lines = rows[index][3]  # the row's line, per header it was written under
            header = tuple(columns)
            if header not in lines:
                lines.clear()
                lines[header] = _csv_line(rows[index][1], columns)
            return lines[header]

        write_results(self.search_dir, records, best, encoded, [r[2] for r in rows], csv_line)
        return best


def _state(record: TrialRecord) -> tuple:
    """What a trial's JSON and its cell's row are computed from: a record changes by being given a new status,
    error or metrics dict (its reports replace the dict, never edit it), or by another record of the trial."""
    return (id(record), record.status, record.error, record.learning_rate, id(record.metrics), len(record.metrics),
            record.node)
