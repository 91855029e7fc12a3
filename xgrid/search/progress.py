"""Progress of a search: stage-1 checkpoints, then per target its trials (or retrieval evaluations) done out of
planned, running apart from queued, the best selected score so far, and an ETA.

The counts are the plan's: stage 1 counts the checkpoints the plan trains (the `none` baseline trains nothing
and is not counted), a target counts `trials_per_cell` trials per cell, or one evaluation per cell for a
retrieval target - the same numbers the end-of-search summary, `xgrid status` and MLflow's runs give. A unit is
running from the moment the search hands it to Ray (stage 1 hands out no more than `max_concurrent_trials` at
once; Tune starts a trial when it has placed it) and queued before. ETA: `xgrid.search.eta`, from the durations
of this stage's finished units as the driver saw them.

In a terminal it is a rich Live table redrawn in place. Anywhere else (a pipe, a log file, `docker compose
logs`) a redraw would append a whole table each time, so it prints one line when the counts change instead:
at most one every `interval` seconds, plus one when stage 1 or a target ends and one at the end."""

from __future__ import annotations

import bisect

import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.table import Table

from xgrid.events import SearchListener, TrialRecord
from xgrid.search.eta import duration, eta_seconds


@dataclass
class Tally:
    """One stage 1 or one target: what is planned, what has happened, and when each running unit started."""

    total: int
    concurrency: int
    completed: int = 0  # stage 1: trained
    reused: int = 0  # stage 1 only: found in the store, nothing trained
    stopped: int = 0
    failed: int = 0
    cut_off: int = 0  # running when the search was interrupted: neither done nor queued any more
    best: float | None = None
    started: dict[object, float] = field(default_factory=dict)  # running unit -> monotonic start
    durations: list[float] = field(default_factory=list)  # of the units that finished, shortest first

    @property
    def running(self) -> int:
        return len(self.started)

    @property
    def done(self) -> int:
        return self.completed + self.reused + self.stopped + self.failed

    @property
    def queued(self) -> int:
        return max(0, self.total - self.done - self.running - self.cut_off)

    def start(self, unit: object) -> None:
        self.started[unit] = time.monotonic()

    def finish(self, unit: object, outcome: str) -> None:
        began = self.started.pop(unit, None)
        if began is not None and outcome in ("completed", "stopped"):
            # Kept sorted, so the median is two look-ups: the progress is redrawn on every event of every trial.
            bisect.insort(self.durations, time.monotonic() - began)
        setattr(self, outcome, getattr(self, outcome) + 1)

    def eta(self) -> float | None:
        d, n = self.durations, len(self.durations)
        # The median of the sorted durations, computed as statistics.median does; eta_seconds takes it from there.
        median = [] if not n else [d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2]
        return eta_seconds(self.total - self.done, median, self.concurrency)


class Progress(SearchListener):
    def __init__(self, console: Console, metric_key: str, enabled: bool = True, interval: float = 5.0):
        self.console, self.metric_key, self.enabled = console, metric_key, enabled
        self.interval = interval
        self.stage1 = Tally(0, 1)
        self.targets: dict[str, Tally] = {}
        self.units: dict[str, str] = {}  # target -> "trials" or "evaluations"
        self._live: Live | None = None
        self._lines: _Lines | None = None
        self._unpinned = None
        self._current: str | None = None  # the target of the latest trial event; None during stage 1
        self._round: int | None = None  # a budgeted search's current round
        self._restored: dict[str, TrialRecord] = {}  # trial id -> a trial an earlier driver finished (--resume)

    def _count(self, plan):
        """Tallies for what `plan` runs (a budgeted search: the round's)."""
        concurrency = plan.space.resources.max_concurrent_trials
        self.stage1 = Tally(len(plan.trained_jobs), concurrency)
        self.targets = {}
        for target in plan.space.targets:
            cells = plan.cells_for(target)
            if not cells:
                continue
            trains = cells[0].trains
            self.targets[target] = Tally(sum(plan.trials_of(c) for c in cells) if trains else len(cells), concurrency)
            self.units[target] = "trials" if trains else "evaluations"

    def search_started(self, plan, search_dir):
        self._count(plan)
        # Stage 2 sends sys.stdout to tune.log while Tune runs (Tune's own prints); a console that follows
        # sys.stdout would send the progress there too. Pin it to today's stdout until the search ends.
        self._unpinned = self.console._file
        current = self.console.file  # a stream that follows sys.stdout by itself (the CLI's redacting one) pins too
        self.console.file = current.pin() if hasattr(current, "pin") else current
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

    # --- a budgeted search's rounds --------------------------------------------------------------------------------
    def round_started(self, round_no, plan):
        if self._lines is not None and self._round is not None:
            self._lines.show(self._line(), now=True)  # the last state of the previous round
        self._round, self._current = round_no, None
        self._count(plan)
        ids = {c.id for c in plan.cells}
        for record in self._restored.values():  # a resumed round: what the dead driver finished counts as done
            if record.cell.id in ids and record.cell.target in self.targets:
                self.targets[record.cell.target].finish(record.trial_id, record.status)
        seeds = sorted({c.seed for c in plan.cells})
        self._say(f"round {round_no}: {', '.join(self.targets) or 'no target'} with seed(s) "
                  f"{', '.join(map(str, seeds))}")
        self._refresh()

    def round_finished(self, round_no, decisions, state):
        if self._lines is not None:
            self._lines.show(self._line(), now=True)
        for d in decisions:
            self._say(f"round {round_no}: {d.target} at {d.seeds} seed(s): {d.interval_text()} at level "
                      f"{d.level:.3g}: {d.status}")

    def round_restored(self, round_no, plan, decisions):
        self._say(f"round {round_no}: finished by an earlier driver of this search (not run again)")

    def _say(self, line: str):
        if not self.enabled:
            return
        if self._lines is not None:
            self._lines.show(line, now=True)
        elif self._live is not None:
            self._live.console.print(line)

    # --- stage 1: only the checkpoints the plan trains count --------------------------------------------------
    def stage1_started(self, job):
        if job.trains:
            self.stage1.start(job.key)
            self._refresh()

    def stage1_finished(self, job, trained, result):
        if job.trains:
            self.stage1.finish(job.key, "completed" if trained else "reused")
            self._refresh()

    def stage1_failed(self, job, error):
        if job.trains:
            self.stage1.finish(job.key, "failed")
            self._refresh()

    # --- stage 2 and retrieval ----------------------------------------------------------------------------------
    def trial_started(self, record: TrialRecord):
        self._switch_to(record.cell.target)
        self.targets[record.cell.target].start(record.trial_id)
        self._refresh()

    def trial_result(self, record, metrics):
        score = metrics.get(self.metric_key)
        tally = self.targets[record.cell.target]
        if score is not None and (tally.best is None or score > tally.best):
            tally.best = score
        self._refresh()

    def trial_finished(self, record):
        self.targets[record.cell.target].finish(record.trial_id, record.status)
        self._refresh()

    def trial_restored(self, record):
        """A trial an earlier driver of this search finished (--resume): done, with its score, but no duration
        (the ETA is timed on what this driver runs)."""
        self._restored[record.trial_id] = record
        tally = self.targets.get(record.cell.target)
        if tally is None:
            return
        tally.finish(record.trial_id, record.status)
        score = record.metrics.get(self.metric_key)  # as trial_result takes it from a live trial's report
        if score is not None and (tally.best is None or score > tally.best):
            tally.best = score

    # --- drawing --------------------------------------------------------------------------------------------------
    def _refresh(self):
        if self._live is not None:
            self._live.update(self._render())
        if self._lines is not None:
            stage1_done = self._current is None and self.stage1.done == self.stage1.total
            self._lines.show(self._line(), now=stage1_done)

    def _switch_to(self, target: str):
        """Targets run one after another: the first trial of the next one means the previous one has ended."""
        if target != self._current and self._lines is not None:
            self._lines.show(self._line(), now=True)  # the last state of stage 1 or of the previous target
        self._current = target

    def _stage1_summary(self) -> str:
        s = self.stage1
        return (f"stage 1: {s.done}/{s.total} checkpoints ({s.completed} trained, {s.reused} reused from the "
                f"store, {s.failed} failed), {s.running} running, {s.queued} queued{_eta(s)}")

    def _target_summary(self, target: str) -> str:
        t = self.targets[target]
        best = "-" if t.best is None else f"{t.best:.1f}"
        position = f"target {list(self.targets).index(target) + 1} of {len(self.targets)}"
        return (f"{target} ({position}): {t.done}/{t.total} {self.units[target]} ({t.completed} completed, "
                f"{t.stopped} stopped early, {t.failed} failed), {t.running} running, {t.queued} queued, "
                f"best {self.metric_key} {best}{_eta(t)}")

    def _line(self) -> str:
        line = self._stage1_summary() if self._current is None else self._target_summary(self._current)
        return line if self._round is None else f"round {self._round}: {line}"

    def _render(self) -> Table:
        table = Table(title=self._stage1_summary())
        for column in ("target", "done", "completed", "stopped early", "failed", "running", "queued",
                       f"best {self.metric_key}", "ETA"):
            table.add_column(column)
        for target, t in self.targets.items():
            table.add_row(target, f"{t.done}/{t.total} {self.units[target]}", str(t.completed), str(t.stopped),
                          str(t.failed), str(t.running), str(t.queued), "-" if t.best is None else f"{t.best:.1f}",
                          duration(t.eta(), "-") if t.done < t.total else "")
        return table


def _eta(tally: Tally) -> str:
    """`, ETA 3m 05s` while units are left; nothing once all are done."""
    return "" if tally.done >= tally.total else f", ETA {duration(tally.eta())}"


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
