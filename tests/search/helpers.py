from xgrid.planning.plan import build_plan
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search
from xgrid.tracking import open_writer
from xgrid.tracking.listener import TrackingListener
from xgrid.tracking_schema import default_tracking_uri


def tracked_search(space, registry, root, listeners=(), **options):
    """`run_search` as `xgrid search` calls it: the plan built once, and a TrackingListener writing to the
    default SQLite store under `root` (before any other `listeners`). Returns (outcome, tracker)."""
    tracker = TrackingListener(open_writer(default_tracking_uri(root), space.name))
    outcome = run_search(build_plan(space, registry),
                         SearchOptions(output_root=root, listeners=(tracker, *listeners), ray_init={"num_cpus": 2},
                                       **options))
    return outcome, tracker




def scheduler_horizons(monkeypatch, tmp_path, space, runs) -> list[int]:
    """The epochs (ASHA's max_t) `stage2._tune` hands its scheduler for each `(target, cells, run name)` of `runs`;
    each Tuner is stopped there, before anything runs."""
    import pytest

    from xgrid.search import stage2

    class Stop(Exception):
        pass

    seen = []

    def scheduler(kind, metric, epochs, grace, factor):
        seen.append(epochs)
        raise Stop

    monkeypatch.setattr(stage2, "make_scheduler", scheduler)
    for target, cells, run_name in runs:
        with pytest.raises(Stop):
            stage2._tune(target, cells, space, {}, tmp_path, str(tmp_path / "ray"), None, stage2.StopRequest(), [],
                         run_name=run_name)
    return seen
