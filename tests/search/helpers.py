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


