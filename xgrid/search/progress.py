"""Live progress in the terminal (rich): stage-1 checkpoints, then per target the trials done / running /
stopped early / failed and the best selected score so far."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.live import Live
from rich.table import Table

from xgrid.events import SearchListener, TrialRecord


class Progress(SearchListener):
    def __init__(self, console: Console, metric_key: str, enabled: bool = True):
        self.console, self.metric_key, self.enabled = console, metric_key, enabled
        self.stage1 = {"trained": 0, "reused": 0, "running": 0, "failed": 0, "total": 0}
        self.targets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.totals: dict[str, int] = {}
        self._live: Live | None = None

    def search_started(self, plan, search_dir):
        self.stage1["total"] = len(plan.jobs)
        self.totals = {t: 0 for t in plan.space.targets}
        if self.enabled:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def search_finished(self, status):
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None

    def stage1_started(self, job):
        self.stage1["running"] += 1
        self._refresh()

    def stage1_finished(self, job, trained, result):
        if trained:
            self.stage1["running"] -= 1
        self.stage1["trained" if trained else "reused"] += 1
        self._refresh()

    def stage1_failed(self, job, error):
        self.stage1["running"] -= 1
        self.stage1["failed"] += 1
        self._refresh()

    def trial_started(self, record: TrialRecord):
        self.targets[record.cell.target]["running"] += 1
        self._refresh()

    def trial_result(self, record, metrics):
        score = metrics.get(self.metric_key)
        row = self.targets[record.cell.target]
        if score is not None and score > row.get("best", float("-inf")):
            row["best"] = score
        self._refresh()

    def trial_finished(self, record):
        row = self.targets[record.cell.target]
        row["running"] -= 1
        row[record.status] += 1
        self._refresh()

    def _refresh(self):
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Table:
        s = self.stage1
        table = Table(title=f"stage 1: {s['trained']} trained, {s['reused']} reused from the store, "
                            f"{s['running']} running, {s['failed']} failed (of {s['total']})")
        for column in ("target", "completed", "running", "stopped early", "failed", f"best {self.metric_key}"):
            table.add_column(column)
        for target in self.totals:
            row = self.targets[target]
            best = row.get("best")
            table.add_row(target, str(int(row["completed"])), str(int(row["running"])), str(int(row["stopped"])),
                          str(int(row["failed"])), "-" if best is None else f"{best:.1f}")
        return table
