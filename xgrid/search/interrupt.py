"""Ctrl-C (SIGINT) and SIGTERM (what SLURM and Kubernetes send before a kill) stop the whole search, in either
stage.

Outside Tune a signal raises `SearchInterrupted` where the driver is (stage 1's wait, a retrieval evaluation).
Inside `tuner.fit()` Tune would catch SIGINT itself, stop its trials and return normally, and the search would
move on to the next target: so while Tune runs, its own SIGINT handler is switched off (Tune's documented
`TUNE_DISABLE_SIGINT_HANDLER`), the signal only marks the request, a Tune `Stopper` ends the experiment at its
next step, and `SearchInterrupted` is raised once `fit()` has returned. The runner then closes every open run
KILLED and writes the results of every finished trial."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from ray import tune

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SearchInterrupted(KeyboardInterrupt):
    """The search was stopped by a signal; `signal_name` says which (SIGINT, SIGTERM)."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended (130, 143)."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class StopRequest:
    """Whether a stop was asked for, by which signal, and whether Tune is running (then the signal only marks)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.in_tune = False

    def handle(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        if not self.in_tune:
            raise SearchInterrupted(self.signal_name)

    @contextmanager
    def tune_running(self) -> Iterator[None]:
        """Around `tuner.fit()`: Tune's SIGINT handler off, ours on (and Tune's other settings for a search,
        `ray_env.TUNE_SETTINGS`); raise once fit() has returned if stopped."""
        from xgrid.search.ray_env import TUNE_SETTINGS, scoped_environ

        self.in_tune = True
        try:
            with scoped_environ(TUNE_SETTINGS | {"TUNE_DISABLE_SIGINT_HANDLER": "1"}):
                yield
        finally:
            self.in_tune = False
        if self.signal_name is not None:
            raise SearchInterrupted(self.signal_name)


class StopOnRequest(tune.Stopper):
    """Ends the whole Tune experiment once a stop was requested."""

    def __init__(self, request: StopRequest):
        self.request = request

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.request.signal_name is not None

    def __getstate__(self):  # Tune pickles its stopper into the experiment state: the live request stays here
        return {"request": StopRequest()}


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM stop the search while the block runs (in the main thread; elsewhere nothing changes)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request.handle) for sig in SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
