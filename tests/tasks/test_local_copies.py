"""Local copies of hub datasets (`local_paths.<task>`), for a cluster without internet.

What `xgrid prefetch SPACE --to DIR` writes is what a search then reads from `local_paths.<task>: DIR/<task>` with
the hub switched off and nothing in the Hugging Face cache: the same rows, in the schema the hub path produces,
and the same missing splits. Copies a user makes (a `save_to_disk` folder, a hub repository's files) read the
same way; a copy that lacks a part says which part, and where it looked, in one line.
"""

from __future__ import annotations

import pickle
import datasets
import pytest
import yaml
from typer.testing import CliRunner

from tests.tasks import hub_fake
from tests.tasks.hub_fake import LOCAL, fixture_dataset
from xgrid.cli import app, common
from xgrid.config import parse_space
from xgrid.data.local_corpora import LocalDataMissingError
from xgrid.data.sources import MissingSplitError
from xgrid.planning.needs import dataset_needs
from xgrid.planning.plan import build_plan
from xgrid.tasks import LoadContext

runner = CliRunner()

# Every form of hub read a task makes: one config per language (xnli), a config template with codes and another
# dataset for some languages (udpos: lt from UD treebanks through data files, one treebank without a dev split),
# a dev split from another dataset (xquad's English dev is SQuAD's), one config filtered by id (tydiqa), a
# source with local files or a hub fallback (bucc2018), a target's training task (mnli, squad), and a licensed
# corpus that is copied, not downloaded (ccg).
SPACE = {"name": "copy-test", "base_models": [{"name": "tiny"}],
         "intermediates": ["none", "chunk", "ud_deprel", "ccg"],
         "targets": ["xnli.de", "udpos.lt", "xquad.de", "tydiqa.ar", "bucc2018.de"], "seeds": [0],
         "target_training": {"learning_rate": 1e-5}, "local_paths": {"ccg": LOCAL["ccg"]}}


def switch_hub_off(monkeypatch) -> list:
    """What a node of a cluster without internet has: the real `datasets.load_dataset`, HF_DATASETS_OFFLINE and
    no connection at all. Returns the list of attempted connections (each refused); the test asserts it empty."""
    hub_fake.uninstall(monkeypatch)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    return hub_fake.refuse_connections(monkeypatch)


def read(task, language, role, ctx):
    try:
        rows = task.source.load(task, language, role, ctx)
    except MissingSplitError:
        return "missing"
    return rows.features, rows.to_list()


def test_prefetch_to_writes_copies_a_search_reads_with_the_hub_off(fake_hub, tmp_path, monkeypatch, registry):
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    monkeypatch.setattr(common.console, "_width", 400)
    copies = tmp_path / "copies"
    result = runner.invoke(app, ["prefetch", str(space_file), "--to", str(copies)])
    assert result.exit_code == 0, result.output
    plan = build_plan(parse_space(SPACE, registry), registry)
    needs = dataset_needs(plan)
    tasks = sorted({task.name for task, _ in needs})
    assert tasks == ["bucc2018", "ccg", "chunk", "mnli", "squad", "tydiqa", "ud_deprel", "udpos", "xnli", "xquad"]
    assert sorted(p.name for p in copies.iterdir()) == tasks  # one folder per task, nothing else
    for name in tasks:  # the lines to paste into the space on the cluster
        assert f"{name}: {copies / name}" in result.output
    # The hub path's rows, through the fake hub (the licensed corpus from its own folder) ...
    via_hub = {(t.name, n.language, n.role): read(t, n.language, n.role, LoadContext(local_paths=LOCAL))
               for t, n in needs}
    assert sum(v == "missing" for v in via_hub.values()) >= 3  # e.g. lt_hse has no dev split, xnli no train
    assert via_hub[("udpos", "lt", "dev")] != "missing"  # lt_alksnis has one

    # ... and the copy's, on a node with the hub switched off and an empty cache.
    attempts = switch_hub_off(monkeypatch)
    cache = str(tmp_path / "empty-cache")
    for task, need in needs:
        ctx = LoadContext(local_paths={task.name: str(copies / task.name)}, cache_dir=cache)
        assert read(task, need.language, need.role, ctx) == via_hub[(task.name, need.language, need.role)], need
    assert attempts == []


def test_copies_users_make_read_like_the_hub(fake_hub, tmp_path, registry, monkeypatch):
    """A `DatasetDict.save_to_disk` folder (for a dataset without configs, or one per config) and a hub
    repository's files (parquet per config and split, with or without the README's config table)."""
    squad, mnli, xnli = registry.get("squad"), registry.get("mnli"), registry.get("xnli")
    expected = {(t.name, lang, role): read(t, lang, role, LoadContext())
                for t, lang, role in [(squad, "en", "train"), (squad, "en", "dev"), (mnli, "en", "train"),
                                      (mnli, "en", "dev"), (xnli, "de", "test"), (xnli, "en", "dev")]}
    saved_squad, saved_mnli = tmp_path / "squad", tmp_path / "mnli"
    datasets.DatasetDict({s: fixture_dataset("rajpurkar/squad", "default", s) for s in ("train", "validation")}
                         ).save_to_disk(str(saved_squad))
    datasets.DatasetDict({s: fixture_dataset("nyu-mll/glue", "mnli", s) for s in ("train", "validation_matched")}
                         ).save_to_disk(str(saved_mnli / "mnli"))
    plain, described = tmp_path / "xnli", tmp_path / "squad-repo"  # files as a hub repository holds them
    for language in ("de", "en"):
        for split in ("validation", "test"):
            fixture_dataset("facebook/xnli", language, split).to_parquet(
                str(plain / language / f"{split}-00000-of-00001.parquet"))
    for split in ("train", "validation"):
        fixture_dataset("rajpurkar/squad", "default", split).to_parquet(
            str(described / "plain_text" / f"{split}-00000-of-00001.parquet"))
    (described / "README.md").write_text(
        "---\nconfigs:\n- config_name: plain_text\n  default: true\n  data_files:\n"
        "  - split: train\n    path: plain_text/train-*\n"
        "  - split: validation\n    path: plain_text/validation-*\n---\n")
    attempts = switch_hub_off(monkeypatch)
    cache = str(tmp_path / "cache")
    for (name, lang, role), rows in expected.items():
        task = registry.get(name)
        folders = {"squad": [saved_squad, described], "mnli": [saved_mnli], "xnli": [plain]}[name]
        for folder in folders:
            ctx = LoadContext(local_paths={name: str(folder)}, cache_dir=cache)
            assert read(task, lang, role, ctx) == rows, (name, lang, role, folder)
    assert attempts == []


def test_a_copy_without_a_part_says_which_and_where(tmp_path, registry, monkeypatch):
    attempts = switch_hub_off(monkeypatch)
    xnli = registry.get("xnli")
    copy = tmp_path / "xnli"
    rows = fixture_dataset("facebook/xnli", "en", "test")
    rows.to_parquet(str(copy / "facebook__xnli" / "en" / "test" / "0.parquet"))
    ctx = LoadContext(local_paths={"xnli": str(copy)}, cache_dir=str(tmp_path / "cache"))
    assert xnli.source.load(xnli, "en", "test", ctx).to_list() == rows.to_list()
    with pytest.raises(MissingSplitError):  # the config is there, the split is not: the task skips it
        xnli.source.load(xnli, "en", "dev", ctx)
    with pytest.raises(LocalDataMissingError) as err:  # the whole config is missing: an error, no hub fallback
        xnli.source.load(xnli, "de", "test", ctx)
    message = str(err.value)
    assert "local_paths.xnli" in message and "facebook/xnli" in message and "'de'" in message
    assert str(copy / "facebook__xnli") in message and "\n" not in message
    assert "xgrid prefetch SPACE --to DIR" in message
    with pytest.raises(LocalDataMissingError, match="does not exist"):
        xnli.source.load(xnli, "en", "test", LoadContext(local_paths={"xnli": str(tmp_path / "nowhere")}))
    # Ray copies a worker's exception by pickling it: the message survives, one argument or not.
    again = pickle.loads(pickle.dumps(err.value))
    assert type(again) is LocalDataMissingError and str(again) == message
    assert attempts == []


def test_prefetch_to_copies_base_models_out_of_the_cache(fake_hub, tmp_path, monkeypatch):
    """A base model lands in DIR/models/<owner>__<name> as plain files (the cache's snapshot holds links), a
    folder `base_models[].source` can name."""
    from xgrid.data import hub
    from xgrid.models import hub as model_hub

    blob = tmp_path / "cache" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_text('{"model_type": "xlm-roberta"}')
    snapshot = tmp_path / "cache" / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to(blob)
    monkeypatch.setattr(model_hub, "fetch_model", lambda repo, cache_dir: str(snapshot))
    monkeypatch.setattr(hub, "probe_hub", lambda *args, **kwargs: None)
    monkeypatch.setattr(common.console, "_width", 400)
    space = SPACE | {"base_models": [{"name": "xlmr", "source": "example-org/encoder"}], "intermediates": ["none"],
                     "targets": ["xnli.de"], "local_paths": {}}
    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(space))
    copies = tmp_path / "copies"
    result = runner.invoke(app, ["prefetch", str(space_file), "--to", str(copies)])
    assert result.exit_code == 0, result.output
    copied = copies / "models" / "example-org__encoder" / "config.json"
    assert copied.is_file() and not copied.is_symlink() and "xlm-roberta" in copied.read_text()
    assert f"source: {copies / 'models' / 'example-org__encoder'}" in result.output
    assert sorted(p.name for p in copies.iterdir()) == ["mnli", "models", "xnli"]
