"""A real search whose hub tasks read local copies: `xgrid prefetch SPACE --to DIR` writes them (through the fake
hub, in this process), then the search runs on local Ray with the hub switched off for every worker, an empty
Hugging Face cache, and no fake hub in any worker process: the only place the data can come from is the copy
named in `local_paths`, which travels to the workers in each phase request."""

from __future__ import annotations

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from tests.tasks import hub_fake
from xgrid.cli import app
from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a whole search (~30-60 s)

SPACE = {
    "name": "it-local-copy",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["chunk"],
    "targets": ["udpos.de"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 32},
    "target_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 32},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


def test_search_reads_hub_tasks_from_local_copies(tmp_path, monkeypatch, registry):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    fake = hub_fake.install(monkeypatch)
    monkeypatch.chdir(tmp_path)  # relative paths, resolved where the space is read
    result = CliRunner().invoke(app, ["prefetch", str(space_file), "--to", "copies"])
    assert result.exit_code == 0, result.output
    hub_fake.uninstall(monkeypatch)
    fetched = len(fake.calls)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # inherited by the Ray workers started below
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    space = parse_space(SPACE | {"local_paths": {"chunk": "copies/chunk", "udpos": "copies/udpos"}}, registry)
    assert space.local_paths["udpos"] == str(tmp_path / "copies" / "udpos")
    monkeypatch.chdir(tmp_path / "copies")  # the driver's cwd moves too: nothing depends on it any more
    outcome = run_search(build_plan(space, registry),
                         SearchOptions(output_root=tmp_path / "runs", ray_init={"num_cpus": 2}))
    assert outcome.stage1_trained == 1
    (record,) = outcome.records["udpos.de"]
    assert record.status == "completed", record.error
    for language in ("en", "de"):  # English from udpos.English, German from udpos.German: both from the copy
        assert 0 <= record.metrics[f"f1.{language}"] <= 100
    assert len(fake.calls) == fetched  # the search asked no hub, fake or real
