"""The live progress keeps its durations sorted and takes the median from there: the ETA is the one
`eta_seconds` gives over every duration (the rule `xgrid status` uses), at every step."""

from __future__ import annotations

import random

from xgrid.search.eta import eta_seconds
from xgrid.search.progress import Tally


def test_tally_eta_equals_eta_seconds_over_every_duration(monkeypatch):
    import xgrid.search.progress as progress

    rng = random.Random(3)
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tally = Tally(total=60, concurrency=3)
    finished = []
    assert tally.eta() is None
    for unit in range(60):
        tally.start(unit)
        began = clock[0]
        clock[0] += rng.choice([0.5, 1.0, 2.0, rng.uniform(0, 10)])
        outcome = rng.choice(["completed", "completed", "stopped", "failed"])
        tally.finish(unit, outcome)
        if outcome in ("completed", "stopped"):
            finished.append(clock[0] - began)
        assert tally.eta() == eta_seconds(tally.total - tally.done, finished, tally.concurrency)
        assert tally.durations == sorted(finished)
    assert tally.eta() == 0.0
