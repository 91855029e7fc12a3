"""Progress of a search: stage-1 checkpoints, then per target the trials done / running / stopped early / failed
and the best selected score so far.

In a terminal it is a rich Live table redrawn in place. Anywhere else (a pipe, a log file, `docker compose
logs`) a redraw would append a whole table each time, so it prints one line when the counts change instead:
at most one every `interval` seconds, plus one when stage 1 or a target ends and one at the end."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from rich.console import Console
from rich.live import Live
from rich.table import Table

from xgrid.events import SearchListener, TrialRecord


class Progress(SearchListener):
    def __init__(self, console: Console, metric_key: str, enabled: bool = True, interval: float = 5.0):
        self.console, self.metric_key, self.enabled = console, metric_key, enabled
        self.stage1 = {"trained": 0, "reused": 0, "running": 0, "failed": 0, "total": 0}
        self.targets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.totals: dict[str, int] = {}
        self.interval = interval
        self._live: Live | None = None
        self._lines: _Lines | None = None
        self._unpinned = None
        self._current: str | None = None  # the target of the latest trial event; None during stage 1

    def search_started(self, plan, search_dir):
        self.stage1["total"] = len(plan.jobs)
        self.totals = {t: 0 for t in plan.space.targets}
        # Stage 2 sends sys.stdout to tune.log while Tune runs (Tune's own prints); a console that follows
        # sys.stdout would send the progress there too. Pin it to today's stdout until the search ends.
        self._unpinned = self.console._file
        self.console.file = self.console.file
        if self.enabled and not self.console.is_terminal:
            self._lines = _Lines(self.console, self.interval)
            self._refresh()
        elif self.enabled:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.start()

    def search_finished(self, status):
        if self._lines is not None:
            self._lines.stop(self._line())
            self._lines = None
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
        self.console.file = self._unpinned

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
        self._switch_to(record.cell.target)
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
        if self._lines is not None:
            s = self.stage1
            stage1_done = self._current is None and s["trained"] + s["reused"] + s["failed"] == s["total"]
            self._lines.show(self._line(), now=stage1_done)

    def _switch_to(self, target: str):
        """Targets run one after another: the first trial of the next one means the previous one has ended."""
        if target != self._current and self._lines is not None:
            self._lines.show(self._line(), now=True)  # the last state of stage 1 or of the previous target
        self._current = target

    def _stage1_summary(self) -> str:
        s = self.stage1
        return (f"stage 1: {s['trained']} trained, {s['reused']} reused from the store, "
                f"{s['running']} running, {s['failed']} failed (of {s['total']})")

    def _target_summary(self, target: str) -> str:
        row = self.targets[target]
        best = row.get("best")
        return (f"{target}: {int(row['completed'])} completed, {int(row['running'])} running, "
                f"{int(row['stopped'])} stopped early, {int(row['failed'])} failed, "
                f"best {self.metric_key} {'-' if best is None else f'{best:.1f}'}")

    def _line(self) -> str:
        return self._stage1_summary() if self._current is None else self._target_summary(self._current)

    def _render(self) -> Table:
        table = Table(title=self._stage1_summary())
        for column in ("target", "completed", "running", "stopped early", "failed", f"best {self.metric_key}"):
            table.add_column(column)
        for target in self.totals:
            row = self.targets[target]
            best = row.get("best")
            table.add_row(target, str(int(row["completed"])), str(int(row["running"])), str(int(row["stopped"])),
                          str(int(row["failed"])), "-" if best is None else f"{best:.1f}")
        return table


class _Lines:
    """Prints a line when it differs from the last one printed, at most once per `interval` seconds. A change
    that comes sooner is printed by a timer when the interval is up: a log never shows stale counts for long,
    even when the next event is an hour away."""

    def __init__(self, console: Console, interval: float):
        self.console, self.interval = console, interval
        self._lock = threading.Lock()
        self._printed: str | None = None
        self._pending: str | None = None
        self._last = float("-inf")
        self._timer: threading.Timer | None = None
        self._started = time.monotonic()

    def show(self, line: str, now: bool = False):
        with self._lock:
            wait = self._last + self.interval - time.monotonic()
            if now or wait <= 0:
                self._print(line)
            else:
                self._pending = line if line != self._printed else None  # back to what is shown: nothing new
                if self._pending is not None and self._timer is None:
                    self._timer = threading.Timer(wait, self._flush)
                    self._timer.daemon = True
                    self._timer.start()

    def stop(self, line: str):
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._print(line)

    def _flush(self):
        with self._lock:
            self._timer = None
            if self._pending is not None:
                self._print(self._pending)

    def _print(self, line: str):
        self._pending = None
        if line == self._printed:
            return
        self._printed, self._last = line, time.monotonic()
        elapsed = time.monotonic() - self._started
        self.console.print(f"[{elapsed:6.0f} s] {line}", markup=False, highlight=False, soft_wrap=True)
