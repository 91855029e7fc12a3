"""Pre-flight, for real through the CLI: what a run of a space needs and this machine can tell (base models,
their tokenizers and depth, the data, the resources) is checked before Ray starts, and each problem is one line
naming the model, dataset or field, exit 2, with no search folder written.

Every real run here has Ray's temp folder pointed at a file (`RAY_TMPDIR`): a Ray that started anyway would fail
with its own message ("Ray did not start"), so the message asserted proves the refusal came before Ray.
A dry run stops on what is wrong wherever the space runs (a folder that is not a model, a slow tokenizer, a
layer the model lacks, a copy without a split) and only warns of what this machine lacks (a folder, a cache
entry, a GPU): a space is planned on a laptop for a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from tests.tasks import hub_fake
from xgrid.cli import app
from xgrid.config import parse_space
from xgrid.data.hub import hub_parts
from xgrid.data.local_copy import write_copy
from xgrid.planning.needs import dataset_needs
from xgrid.planning.plan import build_plan
from xgrid.running.preflight import (PreflightError, check_placeable, layer_problem, preflight,
                                     resource_problems)

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

SPACE = {"name": "preflight", "base_models": [{"name": "tiny"}], "intermediates": ["none", "mb_chunk"],
         "targets": ["mb_xnli"], "seeds": [0], "target_training": {"learning_rate": 1e-3, "epochs": 1}}
# A hub target that trains on itself: one task, so one line when its data is missing.
UDPOS = {**SPACE, "intermediates": ["none"], "targets": ["udpos.de"]}


def write(tmp_path: Path, space: dict, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


def with_model(source: str, **extra) -> dict:
    return {**SPACE, "base_models": [{"name": "m", "source": source}], **extra}


def xgrid(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line in its own process, with an empty Hugging Face cache, the hub switched off and a
    Ray that cannot start."""
    (tmp_path / "ray-tmp-is-a-file").write_text("")
    env = {**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_TMPDIR": str(tmp_path / "ray-tmp-is-a-file"),
           **(env or {})}
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "XGRID_OUTPUT_DIR", "XGRID_STORE_ROOT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "xgrid.cli", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=600)


def refused(result, *fragments: str, lines: int = 1) -> list[str]:
    """Exit 2, `lines` error lines (one per problem) holding the fragments, no traceback."""
    out = result.stderr if isinstance(result, subprocess.CompletedProcess) else result.stderr
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == 2, out[-3000:]
    errors = out.strip().splitlines()
    assert len(errors) == lines and all(e.startswith("error: ") for e in errors), out
    assert "Traceback" not in out and "Ray did not start" not in out
    for fragment in fragments:
        assert any(fragment in e for e in errors), (fragment, errors)
    return errors


def run_refused(tmp_path: Path, space: Path, *fragments: str, flags: tuple[str, ...] = (), lines: int = 1,
                own_process: bool = False) -> list[str]:
    """A real run (no --dry-run), refused before Ray and before any folder: in its own process (`xgrid`), or in
    this one through the same app (quicker: the libraries are imported once), with a Ray that cannot start."""
    if own_process:
        result = xgrid(tmp_path, "search", str(space), "--output-dir", "runs", *flags)
    else:
        import ray

        (tmp_path / "ray-tmp-is-a-file").write_text("")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp-is-a-file"))
            patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what is not cached cannot be downloaded
            result = runner.invoke(app, ["search", str(space), "--output-dir", str(tmp_path / "runs"), *flags])
        assert not ray.is_initialized()
    errors = refused(result, *fragments, lines=lines)
    assert not (tmp_path / "runs").exists()  # no search folder, no store, no MLflow database
    return errors


# --- base models --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Real folders: a tiny BERT with only a slow tokenizer (ByT5's, which has no fast form), one holding a
    random file, and a file where a folder should be."""
    import torch
    from transformers import BertConfig, BertModel, ByT5Tokenizer

    root = tmp_path_factory.mktemp("models")
    slow = root / "slow-tokenizer"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=384, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16), add_pooling_layer=False).save_pretrained(slow)
    ByT5Tokenizer().save_pretrained(slow)
    assert not (slow / "tokenizer.json").exists()
    junk = root / "junk"
    junk.mkdir()
    (junk / "weights.bin").write_bytes(os.urandom(4096))
    (root / "a-file").write_text("not a model")
    return {"slow": slow, "junk": junk, "file": root / "a-file"}


def test_a_base_model_folder_that_does_not_exist_stops_the_run_and_the_dry_run(tmp_path):
    space = write(tmp_path, with_model(str(tmp_path / "no-such-model")))
    run_refused(tmp_path, space, "base_models[0] (m)", "no-such-model", "does not exist on this machine")
    # The first finding: a folder that does not exist passed --dry-run.
    refused(runner.invoke(app, ["search", str(space), "--dry-run"]), "no-such-model")


def test_a_folder_that_is_not_a_model_stops_the_run_and_the_dry_run(tmp_path, models):
    space = write(tmp_path, with_model(str(models["junk"])))
    run_refused(tmp_path, space, "base_models[0] (m)", "is not a model", str(models["junk"]))
    refused(runner.invoke(app, ["search", str(space), "--dry-run"]), "is not a model")
    file_space = write(tmp_path, with_model(str(models["file"])), "file.yaml")
    refused(runner.invoke(app, ["search", str(file_space), "--dry-run"]), "is a file, not a model folder")


def test_a_slow_tokenizer_stops_the_run_and_the_dry_run(tmp_path, models):
    space = write(tmp_path, with_model(str(models["slow"])))
    run_refused(tmp_path, space, "base_models[0] (m)", "only a slow tokenizer (ByT5Tokenizer)", "fast")
    refused(runner.invoke(app, ["search", str(space), "--dry-run"]), "only a slow tokenizer")


def test_a_hub_id_not_in_the_local_cache_stops_the_run_and_the_dry_run_warns(tmp_path):
    space = write(tmp_path, with_model("xgrid-test/not-cached"))
    run_refused(tmp_path, space, "base_models[0] (m)", "'xgrid-test/not-cached'", "in the local Hugging Face cache",
                "xgrid prefetch SPACE")
    dry = runner.invoke(app, ["search", str(space), "--dry-run", "--store-root", str(tmp_path / "store")])
    assert dry.exit_code == 0, dry.output
    [warning] = [line for line in dry.stderr.splitlines() if line.startswith("warning: ")]
    assert "xgrid-test/not-cached" in warning and "a run on this machine stops on this" in warning


@pytest.mark.parametrize("hub_answers", [True, False])
def test_an_uncached_hub_model_is_no_problem_for_a_run_that_can_download_it(hub_answers, monkeypatch, registry):
    """Online, training downloads what the cache lacks: pre-flight asks the hub once and stops only when it does
    not answer (offline, the other tests, it never asks)."""
    from xgrid.data import hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    asked = []
    monkeypatch.setattr(hub, "probe_hub", lambda repo, kind: asked.append((repo, kind)) or (
        None if hub_answers else "ConnectionError: no route to host"))
    plan = build_plan(parse_space(with_model("xgrid-test/not-cached"), registry), registry)
    if hub_answers:
        preflight(plan)
    else:
        with pytest.raises(PreflightError, match="xgrid-test/not-cached"):
            preflight(plan)
    assert asked == [("xgrid-test/not-cached", "model")]


def test_a_retrieval_layer_the_model_lacks_stops_the_run_and_the_dry_run(tmp_path):
    space = write(tmp_path, {**SPACE, "targets": ["mb_tatoeba"], "retrieval": {"layer": 99}})
    run_refused(tmp_path, space, "retrieval.layer: 99", "base_models[0] (tiny)", "2 layers")
    refused(runner.invoke(app, ["search", str(space), "--dry-run"]), "retrieval.layer: 99")


def test_the_retrieval_layer_may_be_any_hidden_state():
    assert [layer_problem(layer, 2, "m") for layer in (None, 0, 2, -1, -3)] == [None] * 5
    assert "retrieval.layer: 3" in layer_problem(3, 2, "m") and "retrieval.layer: -4" in layer_problem(-4, 2, "m")


def test_every_problem_is_reported_at_once(tmp_path, models):
    space = {**SPACE, "base_models": [{"name": "gone", "source": str(tmp_path / "gone")},
                                      {"name": "slow", "source": str(models["slow"])}, {"name": "tiny"}],
             "retrieval": {"layer": 5}}
    errors = refused(runner.invoke(app, ["search", str(write(tmp_path, space)), "--dry-run"]), lines=4)
    assert [e.split(":")[1].strip() for e in errors] == ["base_models[0] (gone)", "base_models[1] (slow)",
                                                         "retrieval.layer", "retrieval.layer"], errors


# --- resources ----------------------------------------------------------------------------------------------
@pytest.mark.skipif(__import__("torch").cuda.device_count() > 0, reason="this machine has a GPU")
def test_gpus_on_a_machine_without_one_stop_the_run(tmp_path):
    space = write(tmp_path, SPACE)
    run_refused(tmp_path, space, "--gpus-per-worker/resources.gpus_per_worker: this machine has no GPU",
                flags=("--gpus-per-worker", "1"), own_process=True)
    dry = runner.invoke(app, ["search", str(space), "--dry-run", "--gpus-per-worker", "1"])
    assert dry.exit_code == 0 and "warning: --gpus-per-worker" in dry.stderr, dry.output


def test_more_cpus_per_trial_than_the_machine_has_stop_the_run(tmp_path):
    space = write(tmp_path, SPACE)
    cpus = os.cpu_count()
    run_refused(tmp_path, space, "--cpus-per-worker/resources.cpus_per_worker",
                f"= {2 * cpus} CPUs; this machine has {cpus}",
                flags=("--workers-per-trial", "2", "--cpus-per-worker", str(cpus), "--trial-backend", "ray_train"))


def test_check_placeable_judges_a_cluster_by_its_totals_and_its_nodes():
    space = parse_space({**SPACE, "resources": {"workers_per_trial": 4, "cpus_per_worker": 2, "gpus_per_worker": 1,
                                                "trial_backend": "ray_train"}})
    check_placeable(space, {"CPU": 16.0, "GPU": 4.0}, [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 8.0, "GPU": 2.0}])
    with pytest.raises(PreflightError, match="the cluster has no GPU"):
        check_placeable(space, {"CPU": 64.0})
    with pytest.raises(PreflightError, match=r"4 worker\(s\) x 1 = 4 GPUs; the cluster has 2"):
        check_placeable(space, {"CPU": 64.0, "GPU": 2.0})
    with pytest.raises(PreflightError, match="the largest node of the cluster has 1 CPUs and 4 GPUs"):
        check_placeable(space, {"CPU": 16.0, "GPU": 8.0}, [{"CPU": 1.0, "GPU": 4.0}] * 16)
    with pytest.raises(PreflightError) as err:  # a pickled copy (Ray) keeps the message
        check_placeable(space, {"CPU": 1.0})
    assert len(str(err.value).splitlines()) == 2  # no GPU, too few CPUs: both at once


def test_a_cpu_space_is_placed_on_a_cpu_machine():
    assert resource_problems(parse_space(SPACE).resources, {"CPU": 1.0, "GPU": 0.0}) == []


# --- data ---------------------------------------------------------------------------------------------------
def udpos_copy(tmp_path: Path, registry, skip_config: str | None = None) -> Path:
    """A local copy of everything `UDPOS` reads, as `xgrid prefetch --to` writes it, from the hub fixtures;
    without the parts of `skip_config`."""
    root = tmp_path / "copies" / "udpos"
    plan = build_plan(parse_space(UDPOS, registry), registry)
    for task, need in dataset_needs(plan):
        for part in hub_parts(task.source, task, need.language, need.role):
            if part.name == skip_config:
                continue
            try:
                rows = hub_fake.fixture_dataset(part.path, part.name, part.split)
            except ValueError:  # a split the hub does not have either
                continue
            write_copy(rows, part, root)
    return root


def test_a_dataset_not_in_the_cache_stops_the_run_in_one_line_per_task(tmp_path):
    space = write(tmp_path, UDPOS)
    errors = run_refused(tmp_path, space, "task udpos:", "not in the local Hugging Face cache", "google/xtreme",
                         "xgrid prefetch SPACE", own_process=True)
    assert "more" in errors[0]  # counted, not listed: a whole benchmark can be missing


def test_a_local_copy_without_a_split_the_plan_reads_stops_the_run(tmp_path, registry):
    copy = udpos_copy(tmp_path, registry, skip_config="udpos.German")
    space = write(tmp_path, {**UDPOS, "local_paths": {"udpos": str(copy)}})
    run_refused(tmp_path, space, "local_paths.udpos", "udpos.German", "holds no copy")
    refused(runner.invoke(app, ["search", str(space), "--dry-run"]), "local_paths.udpos", "udpos.German")


def test_a_complete_local_copy_passes(tmp_path, registry):
    copy = udpos_copy(tmp_path, registry)
    space = parse_space({**UDPOS, "local_paths": {"udpos": str(copy)}}, registry)
    preflight(build_plan(space, registry))  # raises nothing


def test_a_local_paths_folder_that_does_not_exist_stops_the_run(tmp_path):
    space = write(tmp_path, {**UDPOS, "local_paths": {"udpos": str(tmp_path / "nowhere")}})
    run_refused(tmp_path, space, "local_paths.udpos", "nowhere", "does not exist")


def test_the_embedded_default_passes_without_loading_a_library(registry):
    """What `xgrid search` runs first: no model to load, no data to read, no torch import for the resources."""
    code = ("import sys; from xgrid.tasks import default_registry; from xgrid.config import load_space; "
            "from xgrid.spaces import resolve_space; from xgrid.planning.plan import build_plan; "
            "from xgrid.running.preflight import preflight; r = default_registry(); "
            "before = set(sys.modules); preflight(build_plan(load_space(resolve_space(None), r), r)); "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} & {'torch', 'transformers', 'ray'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
