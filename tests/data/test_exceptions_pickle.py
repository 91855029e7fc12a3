"""Every xgrid exception survives pickling with its message: an error a Ray worker raises reaches the driver
pickled, and one that cannot be rebuilt there arrives as `__init__() missing 1 required positional argument`
instead of its own message. The classes are found by walking the package, so a new one is covered too."""

from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path

import pytest

import xgrid
from xgrid.data.hub import DatasetNotCachedError, HubPart
from xgrid.data.sources import LocalDataMissingError

PACKAGE = Path(xgrid.__file__).resolve().parent
# Those that cannot pickle yet, with why; a strict xfail fails once one is fixed, so the entry is then removed.
NOT_YET: dict[str, str] = {}  # class -> why it cannot pickle yet (an expected failure, strict: fixed means removed)


def exception_classes() -> list[type[BaseException]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":  # runs the CLI on import
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        found += [c for c in vars(module).values() if inspect.isclass(c) and issubclass(c, BaseException)
                  and c.__module__ == module.__name__]
    return found


# The forms a class is built in by xgrid itself, beyond the one-message form every class is tried with.
RICH = {
    DatasetNotCachedError: [(HubPart("facebook/xnli", "de", "test"), "offline mode; cache lookup said: nothing")],
    LocalDataMissingError: [("ccg", "CCGbank's AUTO files"), ("ccg", "CCGbank's AUTO files", "/data/ccg")],
}


def instances(cls: type[BaseException]) -> list[BaseException]:
    """One built from sample values for each required argument, and the forms in RICH."""
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
              if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    sample = [f"sample {p.name} of {cls.__name__}" for p in params] or [f"a {cls.__name__} message"]
    if cls.__name__ == "SearchInterrupted":
        sample = ["SIGTERM"]
    return [cls(*sample)] + [cls(*args) for args in RICH.get(cls, [])]


CLASSES = exception_classes()


def test_the_walk_finds_the_exceptions():
    names = {c.__name__ for c in CLASSES}
    assert {"DatasetNotCachedError", "LocalDataMissingError", "SpaceError", "TrackingError"} <= names


@pytest.mark.parametrize("cls", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=NOT_YET[key]))
                                 if (key := f"{c.__module__}.{c.__qualname__}") in NOT_YET else c
                                 for c in CLASSES], ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_an_exception_pickles_with_its_message(cls):
    for error in instances(cls):
        for copy in (pickle.loads(pickle.dumps(error)), _cloudpickled(error)):
            assert type(copy) is cls
            assert str(copy) == str(error) and copy.args == error.args
            assert vars(copy) == vars(error)  # attributes too (SearchInterrupted.signal_name)


def _cloudpickled(error: BaseException) -> BaseException:
    import ray.cloudpickle

    return ray.cloudpickle.loads(ray.cloudpickle.dumps(error))


def test_a_dataset_not_cached_in_a_ray_worker_reaches_the_driver_with_its_message():
    """Through real Ray: a task raising the error, as a trial's data loading does on a node without the data."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        @ray.remote(max_retries=0)
        def load():
            raise DatasetNotCachedError(HubPart("facebook/xnli", "de", "test"), "offline mode")

        @ray.remote(max_retries=0)
        def drive():  # a Tune trial driving a Ray Train worker: the error crosses two process boundaries
            return ray.get(load.remote())

        expected = str(DatasetNotCachedError(HubPart("facebook/xnli", "de", "test"), "offline mode"))
        for ref in (load.remote(), drive.remote()):
            with pytest.raises(DatasetNotCachedError) as caught:
                ray.get(ref, timeout=300)
            assert str(caught.value.cause) == expected
            assert expected in str(caught.value) and "required positional argument" not in str(caught.value)
    finally:
        if started:
            ray.shutdown()
