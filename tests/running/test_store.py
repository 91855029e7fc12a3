"""The content-addressed checkpoint store: local folders, and pyarrow filesystem URIs (here `mock://`, which
goes through the same FileSystem.from_uri / copy_files calls as `s3://`)."""

import shutil

from xgrid.running.store import MARKER, CheckpointStore


def make_checkpoint(store, key, text="weights"):
    staging = store.staging_dir(key)
    (staging / "model.safetensors").write_text(text)
    (staging / "config.json").write_text("{}")
    return store.commit(key, staging)


def test_local_commit_is_atomic_and_found_again(tmp_path):
    store = CheckpointStore(tmp_path / "store")
    assert not store.has("k1")
    folder = make_checkpoint(store, "k1")
    assert (folder / MARKER).read_text() == "k1"
    assert CheckpointStore(tmp_path / "store").has("k1")  # a later search sees it
    # A second writer of the same key keeps the first copy and leaves no staging folder behind.
    make_checkpoint(store, "k1", text="other")
    assert (store.fetch("k1") / "model.safetensors").read_text() == "weights"
    assert [p.name for p in (tmp_path / "store" / "checkpoints").iterdir()] == ["k1"]


def test_a_staging_folder_without_marker_is_not_a_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path / "store")
    staging = store.staging_dir("k2")
    (staging / "model.safetensors").write_text("half")
    assert not store.has("k2")  # a crashed writer never leaves a checkpoint a later search would trust


def test_uri_root_uploads_and_fetches_back(tmp_path):
    store = CheckpointStore("mock:///bucket/xgrid", local_cache=tmp_path / "cache")
    make_checkpoint(store, "k3")
    shutil.rmtree(tmp_path / "cache")  # another node: nothing local
    assert store.has("k3")
    folder = store.fetch("k3")
    assert (folder / "model.safetensors").read_text() == "weights"
    assert (folder / MARKER).is_file()
