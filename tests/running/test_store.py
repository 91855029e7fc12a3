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


# --- checksums, quarantine ------------------------------------------------------------------------------------
import json
import multiprocessing

import pytest

from xgrid.running.store import MANIFEST, QUARANTINE, CorruptCheckpoint
from tests.faults import flip_middle_byte, truncate


def real_checkpoint(store, key, value=1.0):
    """A committed folder with a real safetensors file (what save_pretrained writes) and a config."""
    import torch
    from safetensors.torch import save_file

    staging = store.staging_dir(key)
    save_file({"w": torch.full((64, 64), value), "b": torch.zeros(64)}, str(staging / "model.safetensors"))
    (staging / "config.json").write_text('{"hidden_size": 64}')
    return store.commit(key, staging)




def found(store, key):
    reports = []
    return store.find(key, on_corrupt=reports.append), reports


def test_commit_writes_a_manifest_of_every_file(tmp_path):
    store = CheckpointStore(tmp_path)
    folder = real_checkpoint(store, "k")
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert set(files) == {"model.safetensors", "config.json"}
    assert files["config.json"]["size"] == len('{"hidden_size": 64}')
    assert all(len(entry["sha256"]) == 64 for entry in files.values())
    assert CheckpointStore(tmp_path).find("k") == folder  # a fresh process verifies and hands it out


@pytest.mark.parametrize("damage", [truncate, flip_middle_byte], ids=["truncated", "flipped"])
def test_a_damaged_checkpoint_is_reported_quarantined_and_missing(tmp_path, damage):
    real_checkpoint(CheckpointStore(tmp_path), "k")
    damage(tmp_path / "checkpoints" / "k" / "model.safetensors")
    store = CheckpointStore(tmp_path)  # a later search
    assert store.has("k")  # committed: the cheap check does not hash
    folder, reports = found(store, "k")
    assert folder is None
    (bad,) = reports
    assert bad.key == "k" and bad.file == "model.safetensors"
    assert "k" in str(bad) and "model.safetensors" in str(bad) and "\n" not in str(bad)
    (moved,) = (tmp_path / QUARANTINE).iterdir()
    assert moved.name.startswith("k-") and str(moved) == bad.moved_to
    assert (moved / "model.safetensors").is_file()  # kept for a post-mortem
    assert not store.has("k") and not (tmp_path / "checkpoints" / "k").exists()
    real_checkpoint(store, "k")  # trained again: a normal commit
    assert found(store, "k") == (tmp_path / "checkpoints" / "k", [])


def test_fetch_never_hands_out_a_corrupt_checkpoint(tmp_path):
    real_checkpoint(CheckpointStore(tmp_path), "k")
    flip_middle_byte(tmp_path / "checkpoints" / "k" / "config.json")
    with pytest.raises(CorruptCheckpoint, match="stage-1 checkpoint k: config.json does not match its sha256"):
        CheckpointStore(tmp_path).fetch("k")


@pytest.mark.parametrize("change, file, reason", [
    (lambda f: (f / "model.safetensors").unlink(), "model.safetensors", "is missing"),
    (lambda f: (f / "extra.safetensors").write_text("x"), "extra.safetensors", "is not in the manifest"),
    (lambda f: (f / MANIFEST).write_text("{not json"), MANIFEST, "cannot be read"),
    (lambda f: (f / MARKER).write_text("other"), MARKER, "does not name this key"),
])
def test_missing_extra_files_and_a_broken_manifest_are_corrupt(tmp_path, change, file, reason):
    change(real_checkpoint(CheckpointStore(tmp_path), "k"))
    folder, (bad,) = found(CheckpointStore(tmp_path), "k")
    assert folder is None and bad.file == file and reason in str(bad)


def test_a_checkpoint_without_manifest_is_used_after_the_checks_its_files_allow(tmp_path):
    """Committed before manifests: a whole safetensors file is trusted (unverified), a truncated one is not."""
    for key in ("old", "old-truncated"):
        folder = real_checkpoint(CheckpointStore(tmp_path), key)
        (folder / MANIFEST).unlink()
    truncate(tmp_path / "checkpoints" / "old-truncated" / "model.safetensors")
    store = CheckpointStore(tmp_path)
    assert found(store, "old") == (tmp_path / "checkpoints" / "old", [])
    folder, (bad,) = found(store, "old-truncated")
    assert folder is None and bad.file == "model.safetensors" and "safetensors header" in str(bad)


def other_node(store, cache):
    """Another process on another node, seeing the same bucket: a mock:// filesystem lives in the instance
    that opened it, so the new store shares it."""
    node = CheckpointStore(store.root, local_cache=cache)
    node._fs, node._base = store._fs, store._base
    return node


def test_a_corrupt_remote_checkpoint_is_quarantined_in_the_remote_root(tmp_path):
    import pyarrow.fs

    root = "mock:///bucket/q"
    store = CheckpointStore(root, local_cache=tmp_path / "writer")
    real_checkpoint(store, "k")
    fs, base = store._fs, store._base
    with fs.open_output_stream(f"{base}/checkpoints/k/config.json") as out:  # the object store lost bytes
        out.write(b'{"hidden_size": 65}')
    reader = other_node(store, tmp_path / "reader")  # no mirror yet
    folder, (bad,) = found(reader, "k")
    assert folder is None and bad.file == "config.json"
    assert bad.moved_to.startswith(f"{root}/{QUARANTINE}/k-")
    assert not reader.has("k")
    assert not (tmp_path / "reader" / "checkpoints" / "k").exists()  # a bad download is never mirrored
    (moved,) = fs.get_file_info(pyarrow.fs.FileSelector(f"{base}/{QUARANTINE}"))
    assert fs.get_file_info(f"{moved.path}/config.json").type == pyarrow.fs.FileType.File


def test_a_corrupt_local_mirror_is_fetched_again_from_the_remote_root(tmp_path):
    root = "mock:///bucket/m"
    store = CheckpointStore(root, local_cache=tmp_path / "cache")
    mirror = real_checkpoint(store, "k")
    flip_middle_byte(mirror / "model.safetensors")
    fresh = other_node(store, tmp_path / "cache")  # a later search on the same node
    assert found(fresh, "k") == (mirror, [])  # the remote copy was fine: downloaded again
    assert other_node(store, tmp_path / "other").fetch("k")  # and it still is
    assert len(list((tmp_path / "cache" / QUARANTINE).iterdir())) == 1  # the damaged mirror, kept aside


def _commit_many(root, key, value, barrier):
    barrier.wait()
    real_checkpoint(CheckpointStore(root), key, value)


def _watch(root, key, stop, problems):
    """Whenever the key is visible it is complete: nobody reads a half-written folder."""
    store = CheckpointStore(root)
    while not stop.is_set():
        if store.has(key):
            try:
                store.fetch(key)
            except Exception as err:  # noqa: BLE001 - any failure is what this test looks for
                problems.put(repr(err))
            store._verified.clear()


def test_concurrent_writers_of_one_key_one_wins_nobody_sees_a_half_folder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, stop, problems = ctx.Barrier(4), ctx.Event(), ctx.Queue()
    watcher = ctx.Process(target=_watch, args=(tmp_path, "k", stop, problems))
    watcher.start()
    writers = [ctx.Process(target=_commit_many, args=(tmp_path, "k", float(i), barrier)) for i in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    stop.set()
    watcher.join(60)
    assert [w.exitcode for w in writers] == [0] * 4 and watcher.exitcode == 0
    assert problems.empty(), problems.get()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["k"]  # no staging folder left behind
    assert CheckpointStore(tmp_path).find("k") is not None
    assert not (tmp_path / QUARANTINE).exists()


# --- what the driver asks without fetching; the node's cache, evicted by size ---------------------------------
def test_the_driver_checks_a_remote_checkpoint_without_downloading_it(tmp_path):
    """`check` reads the manifest and the listing only: nothing lands in the driver's cache, a truncated object is
    caught by its size (and quarantined), and the training record is read on its own."""
    root = "mock:///bucket/c"
    writer = CheckpointStore(root, local_cache=tmp_path / "writer")
    real_checkpoint(writer, "good")
    real_checkpoint(writer, "cut")
    driver = other_node(writer, tmp_path / "driver")
    assert driver.check("good")
    assert json.loads(driver.read_text("good", MANIFEST))["files"]
    assert not (tmp_path / "driver" / "checkpoints").exists()  # nothing downloaded
    fs, base = writer._fs, writer._base
    with fs.open_output_stream(f"{base}/checkpoints/cut/model.safetensors") as out:
        out.write(b"short")  # the object lost its tail
    heard = []
    assert not driver.check("cut", on_corrupt=heard.append)
    assert heard[0].file == "model.safetensors" and "truncated" in str(heard[0])
    assert heard[0].moved_to.startswith(f"{root}/{QUARANTINE}/cut-")
    assert not driver.has("cut") and not driver.check("missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        driver.read_text("missing", "config.json")


def test_a_nodes_cache_of_a_remote_root_is_evicted_by_size_least_recently_used_first(tmp_path, monkeypatch):
    import os

    root = "mock:///bucket/e"
    writer = CheckpointStore(root, local_cache=tmp_path / "writer")
    for key in ("a", "b", "c"):
        real_checkpoint(writer, key)
    node = other_node(writer, tmp_path / "node")
    size = sum(f.stat().st_size for f in node.fetch("a").rglob("*") if f.is_file())
    node.fetch("b")
    os.utime(node.local_path("a") / MARKER, (1, 1))  # `a` used long ago, `b` just now
    # Room for two: fetching `c` evicts the least recently used (`a`), never the one being fetched.
    monkeypatch.setenv("XGRID_CACHE_LIMIT_GB", str(2.5 * size / 1e9))
    node.fetch("c")
    assert sorted(p.name for p in (tmp_path / "node" / "checkpoints").iterdir()) == ["b", "c"]
    assert node.fetch("a")  # fetched again when needed (and now `b` is the oldest: evicted)
    assert sorted(p.name for p in (tmp_path / "node" / "checkpoints").iterdir()) == ["a", "c"]
    # A local root is the store itself: nothing is evicted from it.
    local = CheckpointStore(tmp_path / "local")
    real_checkpoint(local, "x")
    assert local.evict(limit_bytes=0) == [] and local.has("x")
    monkeypatch.setenv("XGRID_CACHE_LIMIT_GB", "lots")
    with pytest.raises(ValueError, match="XGRID_CACHE_LIMIT_GB='lots': expected a number of GB"):
        node.evict()


def test_a_mirror_of_one_root_never_answers_for_another(tmp_path, monkeypatch):
    """The same key in two roots can hold other bytes (a training record's times): each root has its own cache
    folder, and what the driver checks of a remote root is read from the root, not from a mirror."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second = CheckpointStore("mock:///bucket/one"), CheckpointStore("mock:///bucket/two")
    assert first.local != second.local and first.local.parent == second.local.parent == tmp_path / "xgrid-cache"
    writer = CheckpointStore("mock:///bucket/r", local_cache=tmp_path / "writer")
    real_checkpoint(writer, "k")
    driver = other_node(writer, tmp_path / "driver")
    stale = driver.local_path("k")
    stale.mkdir(parents=True)
    (stale / MANIFEST).write_text('{"version": 1, "files": {"model.safetensors": {"size": 1, "sha256": "0"}}}')
    (stale / MARKER).write_text("k")
    assert driver.check("k")  # the root's own manifest and listing agree
    assert json.loads(driver.read_text("k", MANIFEST)) == json.loads(writer.read_text("k", MANIFEST))
