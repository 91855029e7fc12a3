"""The command line over the real registry: `xgrid tasks`, the two shipped spaces' dry runs, and `xgrid prefetch`
(with the hub replaced by a fake that records what would be downloaded: no network)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from tests.tasks.hub_fake import fixture_dataset
from xgrid.cli import app, common
from xgrid.data import hub as data_hub
from xgrid.models import hub as model_hub
from xgrid.tasks import default_registry
from xgrid.tasks import hub

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
runner = CliRunner()


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(common.console, "_width", 400)


def test_tasks_lists_every_entry_with_kind_and_languages(wide_console):
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    for task in hub.ENTRIES:
        line = lines[task.name]
        assert f" {task.kind} " in line
        shown = ",".join(task.languages) if len(task.languages) <= 8 else f"{len(task.languages)}: {task.languages[0]},"
        assert shown in line, (task.name, line)
        assert ("target" in line) == task.is_target


@pytest.mark.parametrize("space", ["xtreme_r_syntactic_vs_semantic.yaml", "x_stilts_reproduction.yaml"])
def test_shipped_spaces_dry_run_print_a_cost(space, wide_console):
    result = runner.invoke(app, ["search", str(SPACES / space), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "unique stage-1 checkpoints" in result.output
    assert "H100 GPU-hours" in result.output  # every base model has a known size, every task a train_size
    assert "unknown" not in result.output
    header = (SPACES / space).read_text().splitlines()[:12]
    assert any(f"xgrid search search_spaces/{space} --dry-run" in line for line in header)


def _space(tmp_path: Path) -> Path:
    data = {"name": "prefetch-test", "base_models": [{"name": "xl", "source": "facebook/xlm-roberta-xl"},
                                                      {"name": "tiny", "source": "embedded:tiny"}],
            "intermediates": ["none", "mnli", "ccg"], "targets": ["xnli", "xquad", "bucc2018", "udpos.th"],
            "seeds": [0],
            "target_training": {"learning_rate": 1e-5}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_prefetch_downloads_every_split_and_model(tmp_path, monkeypatch, wide_console):
    calls, models = [], []

    def hub_load(path, name=None, split=None, revision=None, data_files=None, cache_dir=None, **kwargs):
        calls.append((path, name, split, bool(datasets.config.HF_HUB_OFFLINE)))
        if datasets.config.HF_HUB_OFFLINE:  # nothing is cached yet: only the online read succeeds
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub (OfflineModeIsEnabled)")
        if (path, name, split) == ("google/xtreme", "udpos.Thai", "validation"):  # test-only treebank
            raise ValueError('Unknown split "validation". Should be one of [\'test\'].')
        try:
            return fixture_dataset(path, name or "default", split)
        except (ValueError, ConnectionError):
            return datasets.Dataset.from_dict({"x": [1]})  # languages the fixtures lack: pretend downloaded

    monkeypatch.setattr(datasets, "load_dataset", hub_load)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(model_hub, "fetch_model", lambda repo, cache_dir: models.append(repo) or "/cache")
    probes = []  # the hub answers: one request before the first download, not one per split
    monkeypatch.setattr(data_hub, "probe_hub", lambda repo, *args, **kwargs: probes.append(repo))
    result = runner.invoke(app, ["prefetch", str(_space(tmp_path))])
    assert result.exit_code == 0, result.output
    assert len(probes) == 1
    online = {(p, n, s) for p, n, s, offline in calls if not offline}
    registry = default_registry()
    for language in registry.get("xnli").languages:
        assert ("facebook/xnli", language, "validation") in online and ("facebook/xnli", language, "test") in online
    assert ("nyu-mll/glue", "mnli", "train") in online and ("nyu-mll/glue", "mnli", "validation_matched") in online
    assert ("rajpurkar/squad", None, "train") in online and ("rajpurkar/squad", None, "validation") in online
    for language in ("de", "fr", "ru", "zh"):
        assert ("google/xtreme", f"bucc18.{language}", "validation") in online
    assert ("google/xtreme", "XQuAD.ro", "validation") not in online  # ro comes from google/xquad
    assert ("google/xquad", "xquad.ro", "validation") in online
    assert not any(p == "facebook/xnli" and s == "train" for p, _, s in online)  # never the translated train
    assert models == ["facebook/xlm-roberta-xl"]  # embedded:tiny is built, not downloaded
    assert "local_paths.ccg" in result.output  # CCGbank cannot be downloaded: the table says what to set
    assert "no such split" in result.output  # a missing split is not a failed download

    calls.clear()
    dry = runner.invoke(app, ["prefetch", str(_space(tmp_path)), "--dry-run"])
    assert dry.exit_code == 0 and not calls and "would fetch" in dry.output


def test_prefetch_refuses_offline_mode(tmp_path, monkeypatch, wide_console):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    result = runner.invoke(app, ["prefetch", str(_space(tmp_path))])
    assert result.exit_code == 2 and "HF_DATASETS_OFFLINE" in result.output


def test_model_patterns_fetch_one_weight_format():
    assert "*.safetensors" in model_hub.model_patterns(["model.safetensors", "pytorch_model.bin"])
    assert "*.bin" not in model_hub.model_patterns(["model.safetensors", "pytorch_model.bin"])
    assert "*.bin" in model_hub.model_patterns(["pytorch_model.bin", "config.json"])
