"""provenance.json: the code (xgrid's version and commit), the libraries, and the revision of every base model
and data set a search reads, as found on this machine; written to the search folder at the start and kept with
the parent run (tags xgrid.version / xgrid.commit, the file as an artifact). It never stops a search."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from xgrid import provenance
from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.search import runner
from xgrid.search.options import SearchOptions
from xgrid.tracking import open_writer
from xgrid.tracking.listener import COMMIT_TAG, VERSION_TAG, TrackingListener
from xgrid.tracking_schema import default_tracking_uri
from tests.models import tiny_families
from tests.tracking.memory import memory_backend  # noqa: F401

HUB_MODEL = "xgrid-tests/encoder"
COMMIT_A, COMMIT_B, COMMIT_C = "a" * 40, "b" * 40, "c" * 40
SPACE = {"name": "prov", "base_models": [{"name": "tiny"}, {"name": "hub", "source": HUB_MODEL},
                                         {"name": "gone", "source": "xgrid-tests/never-downloaded"}],
         "intermediates": ["none", "mb_chunk"], "targets": ["mb_udpos", "udpos", "mb_tatoeba"], "seeds": [0],
         "microbench_seed": 7, "target_training": {"learning_rate": 1e-3}}


def ref(cache: Path, folder: str, revision: str, commit: str) -> None:
    path = cache / folder / "refs" / revision
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit)


@pytest.fixture
def hub_cache(tmp_path):
    """A Hugging Face cache holding the hub model and UD-POS's two datasets, as huggingface_hub lays it out."""
    cache = tmp_path / "hub"
    ref(cache, "models--xgrid-tests--encoder", "main", COMMIT_A)
    ref(cache, "datasets--google--xtreme", "main", COMMIT_B)
    # UD-POS's extra treebanks are read from the hub's parquet conversion branch.
    ref(cache, "datasets--universal-dependencies--universal_dependencies", "refs/convert/parquet", COMMIT_C)
    return cache


@pytest.fixture
def plan(registry):
    return build_plan(parse_space(SPACE, registry), registry)


def test_models_by_cached_commit_seed_or_content(registry, plan, hub_cache, tmp_path):
    local = tiny_families.xlmr(tmp_path / "local-model")
    space = plan.space.model_copy(update={"base_models": [*plan.space.base_models,
                                                          plan.space.base_models[0].model_copy(
                                                              update={"name": "local", "source": str(local)})]})
    models = provenance.collect(build_plan(space, registry), hub_cache)["base_models"]
    assert models["tiny"] == {"source": "embedded:tiny", "revision": "embedded", "microbench_seed": 7}
    assert models["hub"] == {"source": HUB_MODEL, "revision": COMMIT_A}
    assert models["gone"]["revision"] == "uncached"
    from xgrid.models.identity import content_digest

    assert models["local"]["revision"] == content_digest(local)  # the key its checkpoints carry


def test_every_dataset_the_plan_reads(plan, hub_cache):
    datasets = provenance.collect(plan, hub_cache)["datasets"]
    # mb_chunk (stage 1), the targets, and what udpos trains on (itself: UD English).
    assert set(datasets) == {"mb_chunk", "mb_udpos", "udpos", "mb_tatoeba"}
    assert datasets["mb_chunk"]["revision"] == "embedded" and datasets["mb_chunk"]["microbench_seed"] == 7
    hub = {h["repo"]: h for h in datasets["udpos"]["hub"]}
    assert hub["google/xtreme"] == {"repo": "google/xtreme", "requested": "main", "revision": COMMIT_B}
    assert hub["universal-dependencies/universal_dependencies"]["requested"] == "refs/convert/parquet"
    assert hub["universal-dependencies/universal_dependencies"]["revision"] == COMMIT_C


def test_an_empty_cache_says_uncached(plan, tmp_path):
    record = provenance.collect(plan, tmp_path / "empty")
    assert {h["revision"] for h in record["datasets"]["udpos"]["hub"]} == {"uncached"}
    assert record["base_models"]["hub"]["revision"] == "uncached"


def test_a_corrupt_ref_is_uncached_not_an_error(plan, hub_cache):
    ref(hub_cache, "models--xgrid-tests--encoder", "main", "not a commit\n")
    assert provenance.collect(plan, hub_cache)["base_models"]["hub"]["revision"] == "uncached"


def test_a_pinned_commit_is_found_by_its_snapshot(hub_cache):
    (hub_cache / "datasets--google--xtreme" / "snapshots" / COMMIT_A).mkdir(parents=True)
    assert provenance.cached_revision("google/xtreme", "dataset", hub_cache, COMMIT_A) == COMMIT_A
    assert provenance.cached_revision("google/xtreme", "dataset", hub_cache, COMMIT_C) == "uncached"


def test_libraries_and_python(plan, hub_cache):
    record = provenance.collect(plan, hub_cache)
    for name in ("torch", "transformers", "ray", "mlflow", "optuna", "datasets"):
        assert record["libraries"][name] == importlib.metadata.version(name)
    assert record["python"].count(".") == 2
    assert record["xgrid"]["version"] == importlib.metadata.version("xgrid")


# --- the commit ------------------------------------------------------------------------------------------------
def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A git checkout holding a package folder (`pkg/__init__.py`), as an editable install of xgrid is."""
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    git(root, "init", "-q")
    git(root, "add", "pkg/__init__.py")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    return root


def test_the_commit_of_a_clean_and_a_dirty_checkout(checkout):
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.source_commit(checkout / "pkg") == {"commit": head, "dirty": False}
    (checkout / "pkg" / "scratch.txt").write_text("untracked: not what runs")
    assert provenance.source_commit(checkout / "pkg")["dirty"] is False
    (checkout / "pkg" / "__init__.py").write_text("changed = True\n")
    assert provenance.source_commit(checkout / "pkg") == {"commit": head, "dirty": True}
    assert provenance.commit_label({"xgrid": {"commit": head, "dirty": True}}) == head[:12] + "+dirty"


def test_a_package_not_tracked_by_the_repository_around_it_has_no_commit(checkout):
    """A virtual environment inside some other checkout: that checkout's commit is not the package's."""
    installed = checkout / "venv" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert provenance.source_commit(installed) == {"commit": None, "dirty": None}


def test_no_checkout_and_no_git_never_fail(tmp_path, monkeypatch):
    assert provenance.source_commit(tmp_path) == {"commit": None, "dirty": None}
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert provenance.source_commit(Path(provenance.__file__).parent) == {"commit": None, "dirty": None}
    assert provenance.commit_label({"xgrid": {"commit": None}}) == "none"


def test_an_unreadable_model_is_written_down_not_raised(plan, hub_cache, monkeypatch):
    def broken(*args):
        raise PermissionError("model.safetensors: permission denied")

    monkeypatch.setattr(provenance, "model_revision", broken)
    record = provenance.collect(plan, hub_cache)
    assert record["base_models"]["hub"] == {"revision": None,
                                            "error": "PermissionError: model.safetensors: permission denied"}


def test_the_record_of_xgrid_itself():
    """This checkout (the tests run from one): its HEAD; from an installed wheel it would be None."""
    import xgrid

    package = Path(xgrid.__file__).resolve().parent
    code = provenance.code_provenance()
    try:
        head = git(package, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        head = None
    assert code["commit"] == head and (code["dirty"] is None) == (head is None)


# --- the search folder and the parent run -----------------------------------------------------------------------
@pytest.fixture
def search_without_training(monkeypatch):
    """`run_search` with everything around the training real (folder, files, listeners, the MLflow store) and
    no Ray: stage 1 and stage 2 do nothing."""
    monkeypatch.setattr(runner, "ray_session", lambda options: contextlib.nullcontext(None))
    monkeypatch.setattr(runner, "run_stage1", lambda plan, store, storage_path, events: {})
    monkeypatch.setattr(runner, "search_target", lambda *args, **kwargs: [])


def test_the_search_folder_and_the_parent_run_hold_the_provenance(search_without_training, plan, tmp_path):
    uri = default_tracking_uri(tmp_path)
    tracker = TrackingListener(open_writer(uri, plan.space.name))
    outcome = runner.run_search(plan, SearchOptions(output_root=tmp_path, listeners=(tracker,)))
    record = json.loads((outcome.search_dir / provenance.FILE_NAME).read_text())
    assert record["xgrid"]["version"] == importlib.metadata.version("xgrid")
    assert set(record["base_models"]) == {"tiny", "hub", "gone"}
    assert set(record["datasets"]) == {"mb_chunk", "mb_udpos", "udpos", "mb_tatoeba"}

    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_id)
    assert parent.data.tags[VERSION_TAG] == record["xgrid"]["version"]
    assert parent.data.tags[COMMIT_TAG] == provenance.commit_label(record)
    assert len(parent.data.tags[COMMIT_TAG]) <= len("0123456789ab+dirty")
    artifacts = {a.path for a in client.list_artifacts(tracker.parent_id)}
    assert provenance.FILE_NAME in artifacts
    logged = Path(client.download_artifacts(tracker.parent_id, provenance.FILE_NAME, str(tmp_path / "dl")))
    assert json.loads(logged.read_text()) == record


def test_a_resume_keeps_the_record_of_the_start(search_without_training, plan, tmp_path):
    first = runner.run_search(plan, SearchOptions(output_root=tmp_path))
    path = first.search_dir / provenance.FILE_NAME
    path.write_text(json.dumps({"xgrid": {"version": "from the start"}}))
    runner.run_search(plan, SearchOptions(output_root=tmp_path), resume=first.search_dir)
    assert json.loads(path.read_text()) == {"xgrid": {"version": "from the start"}}
    path.unlink()  # a folder from before provenance existed gets one when it is resumed
    runner.run_search(plan, SearchOptions(output_root=tmp_path), resume=first.search_dir)
    assert provenance.read(first.search_dir)["libraries"]


def test_the_tags_come_from_the_folders_record_and_are_absent_without_one(memory_backend, plan, tmp_path):  # noqa: F811
    def parent_of(folder: Path, uri: str):
        listener = TrackingListener(open_writer(uri, "prov").inner)
        listener.search_started(plan, str(folder))
        return memory_backend[uri].runs[listener.parent_id]

    bare = tmp_path / "20250101-prov"
    bare.mkdir()
    run = parent_of(bare, "memory:bare")  # a listener driven by hand: no record, no tags
    assert VERSION_TAG not in run.tags and COMMIT_TAG not in run.tags and run.artifacts == []

    recorded = tmp_path / "20250102-prov"
    recorded.mkdir()
    record = provenance.write(recorded, plan)
    run = parent_of(recorded, "memory:recorded")
    assert run.tags[VERSION_TAG] == record["xgrid"]["version"]
    assert run.tags[COMMIT_TAG] == provenance.commit_label(record)
    assert run.artifacts == [provenance.FILE_NAME]
