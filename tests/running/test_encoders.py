"""Encoder sources every node can resolve: store references, never the driver's local paths."""

import pytest

from xgrid.config import BaseModelSpec, load_space
from xgrid.running.encoders import base_model_source, parse_stored, resolve_encoder, stored, tiny_model_key
from xgrid.running.store import CheckpointStore
from xgrid.spaces import resolve_space


def test_the_tiny_model_is_committed_to_the_store_once_and_handed_out_as_a_reference(tmp_path, registry):
    space = load_space(resolve_space("microbench-default"), registry)
    store = CheckpointStore(tmp_path / "store")
    source = base_model_source(space.base_models[0], space, store)
    key = tiny_model_key(space.microbench_seed)
    assert source == f"xgrid-store:{key}@{store.root}" and parse_stored(source) == (key, store.root)
    folder = resolve_encoder(source)
    assert (tmp_path / "store" / "checkpoints" / key / "config.json").is_file() and folder.endswith(key)
    stamp = (tmp_path / "store" / "checkpoints" / key / "model.safetensors").stat().st_mtime_ns
    assert base_model_source(space.base_models[0], space, store) == source  # not built again
    assert (tmp_path / "store" / "checkpoints" / key / "model.safetensors").stat().st_mtime_ns == stamp
    hub = BaseModelSpec(name="xlmr", source="xlm-roberta-large")
    assert base_model_source(hub, space, store) == "xlm-roberta-large" == resolve_encoder("xlm-roberta-large")


def test_a_reference_the_store_cannot_satisfy_says_so(tmp_path):
    store = CheckpointStore(tmp_path / "store")
    with pytest.raises(FileNotFoundError, match="no stage-1 checkpoint abc under"):
        resolve_encoder(stored("abc", store))
    with pytest.raises(ValueError, match="expected xgrid-store:<key>@<store root>"):
        resolve_encoder("xgrid-store:abc")
