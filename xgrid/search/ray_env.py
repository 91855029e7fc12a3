"""Credentials reach Ray's workers through the environment of the node they run on, never through a runtime_env.

Ray Tune copies the driver's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and
`AWS_SECURITY_TOKEN` into the `runtime_env` `env_vars` of every trial actor it starts (Ray 2.60,
`ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE`), and Ray's runtime-env agent then prints that runtime
env, values included, in `runtime_env_agent.log` under the session folder: a world-readable file the dashboard
serves. Ray Train V2 has such a list too (`ray.train.v2._internal.constants.ENV_VARS_TO_PROPAGATE`, only its own
settings in 2.60).

While a search holds Ray (`ray_session`), every secret-looking name (`xgrid.redaction.is_secret_name`) is taken
out of those lists, so no runtime env carries a credential. The processes that need one still get it, from the
environment their node's Ray was started with:
- a local Ray started by xgrid is started by the driver, so its raylet and every worker (Tune trials, Ray Train
  workers, stage-1 tasks) inherit the driver's environment, credentials included;
- a cluster joined with `--address` gives its workers the environment of each node's `ray start` (or the node's
  instance role, or `~/.aws/credentials` there), as docker/compose.yaml and a SLURM job's `srun` do; the driver's
  own variables never travelled to stage-1 tasks there anyway.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from xgrid.redaction import is_secret_name


def _propagated_lists() -> list[set[str]]:
    """Ray's sets of environment variable names copied from the driver into runtime envs (private modules: a
    set that moved in another Ray release is simply not found)."""
    found = []
    for module, name in (("ray.tune.execution.class_cache", "ENV_VARS_TO_PROPAGATE"),
                         ("ray.train.v2._internal.constants", "ENV_VARS_TO_PROPAGATE")):
        try:
            from importlib import import_module

            names = getattr(import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(names, set):
            found.append(names)
    return found


@contextmanager
def credentials_off_runtime_envs() -> Iterator[None]:
    """For the length of a block, Ray copies no secret-looking variable into a runtime env; put back after (the
    sets are changed in place: every module that imported them sees the change)."""
    removed: list[tuple[set[str], set[str]]] = []
    for names in _propagated_lists():
        secret = {n for n in names if is_secret_name(n)}
        names -= secret
        removed.append((names, secret))
    try:
        yield
    finally:
        for names, secret in removed:
            names |= secret


@contextmanager
def scoped_environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the length of a block (Ray Tune reads its switches there when
    a fit starts), each variable put back as it was after."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Ray Tune's documented switches for a fit of a search: its per-trial result files (result.json, progress.csv and
# TensorBoard events of every trial) repeat what results.json and MLflow keep, and cost the driver a write of every
# metric of every report (5,000 trials: 15,000 files); `StopRequest.tune_running` sets the SIGINT one.
TUNE_SETTINGS = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
