"""Credentials reach Ray's workers without Ray printing them (xgrid.search.ray_env): under the Ray a search holds
(`ray_session`), a Tune trial, a Ray Train worker and a plain task each read the AWS key planted in the driver's
environment, and no file under the Ray session folder holds it, while Ray's runtime-env agent did print the trial's
runtime env there (which, before, carried the key in clear).

The whole search, with the key used for real against an S3 server that checks signatures, is
tests/tracking/test_production_stack.py."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from xgrid.search.options import SearchOptions
from xgrid.search.ray_env import credentials_off_runtime_envs

pytestmark = pytest.mark.integration

PLANTED = {"AWS_ACCESS_KEY_ID": f"xgrid-planted-id-{secrets.token_hex(8)}",
           "AWS_SECRET_ACCESS_KEY": f"xgrid-planted-{secrets.token_hex(12)}",
           "AWS_SESSION_TOKEN": f"xgrid-planted-token-{secrets.token_hex(12)}"}


def digest(value: str | None) -> str | None:
    """What a worker sends back: never the secret itself (the results would then hold it)."""
    return None if value is None else hashlib.sha256(value.encode()).hexdigest()


def seen_by_worker() -> dict[str, str | None]:
    return {name: digest(os.environ.get(name)) for name in PLANTED}


EXPECTED = {name: digest(value) for name, value in PLANTED.items()}


def files_holding(folder: Path, needles: list[str]) -> list[str]:
    """Every regular file under `folder` whose bytes contain one of `needles`."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n[:16]}..." for n in needles if n.encode() in data]
    return found


@pytest.fixture(scope="module")
def ray_with_planted_keys():
    """xgrid's own Ray start (`ray_session`) with the keys in the driver's environment, its session folder in a
    fresh temp folder (short: Ray's socket paths have a length limit)."""
    import ray

    from xgrid.search.runner import ray_session

    if ray.is_initialized():
        pytest.skip("another test left Ray running in this process")
    temp = Path(tempfile.mkdtemp(prefix="xr-"))
    saved = {name: os.environ.get(name) for name in PLANTED}
    os.environ.update(PLANTED)
    try:
        with ray_session(SearchOptions(ray_init={"num_cpus": 2, "_temp_dir": str(temp)})):
            yield temp
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_copies_no_credential_into_a_runtime_env_while_a_search_holds_it():
    from ray.tune.execution import class_cache

    before = set(class_cache.ENV_VARS_TO_PROPAGATE)
    assert {"AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"} <= before  # what Ray 2.60 copies
    with credentials_off_runtime_envs():
        with credentials_off_runtime_envs():  # a run_search inside the CLI's ray_session
            assert not {n for n in class_cache.ENV_VARS_TO_PROPAGATE if n.startswith("AWS_")}
        assert not {n for n in class_cache.ENV_VARS_TO_PROPAGATE if n.startswith("AWS_")}
        assert "PL_DISABLE_FORK" not in class_cache.ENV_VARS_TO_PROPAGATE  # (a default, not propagated)
    assert set(class_cache.ENV_VARS_TO_PROPAGATE) == before


def test_a_tune_trial_and_a_task_get_the_key_and_no_ray_file_holds_it(ray_with_planted_keys, tmp_path):
    import ray
    from ray import tune

    def trial(config):
        tune.report({"env_ok": float(seen_by_worker() == EXPECTED)})

    results = tune.Tuner(trial, tune_config=tune.TuneConfig(num_samples=1),
                         run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="creds",
                                                   verbose=0)).fit()
    assert results.errors == [] and results[0].metrics["env_ok"] == 1.0, "the Tune trial did not get the keys"
    assert ray.get(ray.remote(seen_by_worker).remote()) == EXPECTED, "a Ray task did not get the keys"

    session = next((ray_with_planted_keys / "session_latest").resolve().parent.glob("session_2*"))
    agent_log = session / "logs" / "runtime_env_agent.log"
    # The agent printed the trial actor's runtime env (Tune's own PL_DISABLE_FORK), without the keys in it.
    assert '"PL_DISABLE_FORK"' in agent_log.read_text(errors="replace")
    assert files_holding(ray_with_planted_keys, list(PLANTED.values())) == []
    assert files_holding(tmp_path / "tune", list(PLANTED.values())) == []


@pytest.mark.slow  # a TorchTrainer's start-up alone is ~20 s on 2 CPUs
def test_a_ray_train_worker_gets_the_key_and_no_ray_file_holds_it(ray_with_planted_keys, tmp_path):
    import ray.train
    from ray.train.torch import TorchTrainer

    def train_loop():  # Train V2 keeps no metrics reported without a checkpoint: a worker without the keys fails
        if seen_by_worker() != EXPECTED:
            raise RuntimeError("the Ray Train worker did not get the keys")

    result = TorchTrainer(train_loop, scaling_config=ray.train.ScalingConfig(num_workers=1),
                          run_config=ray.train.RunConfig(storage_path=str(tmp_path / "train"), name="creds")).fit()
    assert result.error is None
    assert files_holding(ray_with_planted_keys, list(PLANTED.values())) == []
    assert files_holding(tmp_path / "train", list(PLANTED.values())) == []
