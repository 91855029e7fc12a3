"""A local base model is keyed by the content of its files, not its path: replacing the model in a folder changes
every stage-1 key built on it (its old checkpoints are not reused), moving the same model keeps them. Hub ids and
the embedded model keep the key they always had (their checkpoints in existing stores stay valid)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.models import tiny_families
from xgrid.config import BaseModelSpec, parse_space
from xgrid.data import microbench
from xgrid.models import identity
from xgrid.planning.plan import CHECKPOINT_FORMAT, build_plan, stage1_key

SPACE = {"name": "keys", "base_models": [{"name": "m"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_xnli"], "seeds": [0], "target_training": {"learning_rate": 1e-3}}


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("local-models")
    return tiny_families.xlmr(root / "a"), tiny_families.mbert(root / "b")


def keys(source: str, registry) -> list[str]:
    space = parse_space({**SPACE, "base_models": [{"name": "m", "source": source}]}, registry)
    return [job.key for job in build_plan(space, registry).jobs]


def test_replacing_the_model_in_its_folder_changes_the_key(tmp_path, two_models, registry):
    folder = tmp_path / "model"
    shutil.copytree(two_models[0], folder)
    before = keys(str(folder), registry)
    shutil.rmtree(folder)
    shutil.copytree(two_models[1], folder)
    after = keys(str(folder), registry)
    assert len(set(before)) == 2 and not set(before) & set(after)  # every job, the baseline too


def test_changing_one_weight_file_in_place_changes_the_key(tmp_path, two_models, registry):
    folder = tmp_path / "model"
    shutil.copytree(two_models[0], folder)
    before = keys(str(folder), registry)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other content
    weights.write_bytes(bytes(data))
    assert keys(str(folder), registry) != before


def test_moving_the_model_keeps_the_key_and_unread_files_do_not_count(tmp_path, two_models, registry):
    here, there = tmp_path / "here" / "model", tmp_path / "elsewhere" / "renamed"
    shutil.copytree(two_models[0], here)
    shutil.copytree(two_models[0], there)
    (there / "README.md").write_text("notes about this model")  # not a file a model is loaded from
    assert keys(str(here), registry) == keys(str(there), registry)


def test_hub_ids_and_the_embedded_model_keep_their_name_key(registry):
    space = parse_space(SPACE, registry)
    for source in ("FacebookAI/xlm-roberta-large", "embedded:tiny"):
        base = BaseModelSpec(name="m", source=source)
        payload = {"format": CHECKPOINT_FORMAT, "base": {"source": source, "family": "auto"}, "tasks": [],
                   "seed": None}
        if source == "embedded:tiny":  # its tokenizer is trained on the generated data: seed and generator version
            payload["microbench_seed"] = 0
            payload["microbench_version"] = microbench.GENERATOR_VERSION
        expected = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
        assert stage1_key(space, base, (), 0) == expected


def test_a_file_is_hashed_once_per_process_until_it_changes(tmp_path, two_models, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(two_models[0], folder)
    identity.forget_digests()
    opened: list[str] = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(identity, "open", counting_open, raising=False)
    first = identity.content_digest(folder)
    files = len(identity.model_files(folder))
    assert len(opened) == files and "model.safetensors" in opened
    assert identity.content_digest(folder) == first and len(opened) == files  # remembered: nothing re-read
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")  # new size and mtime
    assert identity.content_digest(folder) != first and opened[files:] == ["config.json"]
