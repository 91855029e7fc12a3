from types import SimpleNamespace

from xgrid.events import SearchListener
from xgrid.search.tune_events import TuneEvents, short_error


class Wrapped(Exception):
    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


def test_short_error_is_the_innermost_last_line():
    inner = ValueError("Traceback ...\n  File x\nDatasetUnavailableError: nyu-mll/glue (mnli) is not cached")
    assert short_error(Wrapped("ray task failed", Wrapped("actor died", inner))) == (
        "DatasetUnavailableError: nyu-mll/glue (mnli) is not cached")


def test_failed_trial_records_its_error_and_tells_listeners(registry):
    from xgrid.config import parse_space
    from xgrid.planning.plan import build_plan

    space = parse_space({"name": "e", "base_models": [{"name": "tiny"}], "intermediates": ["none"],
                         "targets": ["mb_udpos"], "seeds": [0], "target_training": {"learning_rate": 0.001}}, registry)
    (cell,) = build_plan(space, registry).cells
    heard = []

    class Listener(SearchListener):
        def trial_finished(self, record):
            heard.append(record)

    events = TuneEvents({cell.id: cell}, Listener(), stopped_early=set())
    trial = SimpleNamespace(trial_id="t1", config={"cell": cell.id, "learning_rate": 0.001},
                            pickled_error_file=None, error_file=None,
                            get_pickled_error=lambda: Wrapped("wrapper", RuntimeError("CUDA out of memory")),
                            get_error=lambda: None)
    events.on_trial_error(0, [], trial)
    assert heard[0].status == "failed" and heard[0].error == "CUDA out of memory"
