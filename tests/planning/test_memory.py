"""The dry run's memory table: per base model and strategy, the per-GPU memory of a training step by the module's
stated assumptions, with a verdict for 40, 80 and 141 GB GPUs; the GPU-hour estimate counts evaluation passes
where they are bounded and says what it leaves out."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from xgrid.cli import app
from xgrid.config import Resources, parse_space
from xgrid.planning.cost import estimate
from xgrid.planning.memory import GB, KNOWN_ARCHITECTURES, memory_rows, per_gpu_memory
from xgrid.planning.plan import build_plan

MODELS = {"xlmr-large": "FacebookAI/xlm-roberta-large", "xlmr-xl": "facebook/xlm-roberta-xl",
          "xlmr-xxl": "facebook/xlm-roberta-xxl", "mt5-xl": "google/mt5-xl", "mt5-xxl": "google/mt5-xxl"}
SPACE = {"name": "mem", "base_models": [{"name": n, "source": s} for n, s in MODELS.items()],
         "intermediates": ["none", "mnli"], "targets": ["xnli", "xquad"], "seeds": [0],
         "intermediate_training": {"learning_rate": 1e-5, "batch_size": 8, "max_length": 128},
         "target_training": {"learning_rate": 1e-5, "batch_size": 8, "max_length": 256},
         "target_overrides": {"xquad": {"max_length": 384}},
         "resources": {"gpus_per_worker": 1, "cpus_per_worker": 8, "precision": "bf16",
                       "activation_checkpointing": True}}


@pytest.fixture(scope="module")
def rows(registry):
    found, notes = memory_rows(build_plan(parse_space(SPACE, registry), registry))
    assert not notes
    return {(r.model, r.strategy, r.workers): r for r in found}


def test_every_model_has_its_own_row_and_the_alternatives(rows):
    for model in MODELS:
        assert rows[(model, "ddp", 1)].declared and not rows[(model, "fsdp", 8)].declared


def test_xl_on_one_gpu_is_the_arithmetic_of_the_assumptions(rows):
    r = rows[("xlmr-xl", "ddp", 1)]
    n = KNOWN_ARCHITECTURES["facebook/xlm-roberta-xl"].params
    assert r.parameters_gb == pytest.approx(6 * n / GB)  # fp32 master + the bf16 autocast copy
    assert r.gradients_gb == pytest.approx(4 * n / GB)  # one worker: no DDP buckets
    assert r.optimizer_gb == pytest.approx(8 * n / GB)
    # the largest step: xquad's 8 x 384; checkpointed: every layer's input + one layer recomputed, in bf16
    tokens_hidden = 8 * 384 * 2560
    assert (r.batch_per_gpu, r.max_length) == (8, 384)
    assert r.activations_gb == pytest.approx((36 * 2 * tokens_hidden + 34 * tokens_hidden) / GB)
    assert r.fits == {"40": False, "80": True, "141": True}


def test_the_verdicts_follow_the_sizes(rows):
    assert rows[("xlmr-large", "ddp", 1)].fits == {"40": True, "80": True, "141": True}
    assert rows[("xlmr-xxl", "ddp", 1)].fits == {"40": False, "80": False, "141": False}  # ~18 B/param of 10.7B
    assert rows[("xlmr-xxl", "fsdp", 8)].fits["80"]
    # the mT5-XXL encoder (5.7B) x ~18 B/param: over 80 GB, under an H200's 141
    assert rows[("mt5-xxl", "ddp", 1)].fits == {"40": False, "80": False, "141": True}
    assert rows[("mt5-xxl", "fsdp", 8)].fits["40"]
    for model in MODELS:  # sharding over 8 always needs less per GPU than one replica
        assert rows[(model, "fsdp", 8)].total_gb < rows[(model, "ddp", 1)].total_gb


def test_checkpointing_and_offload_lower_what_they_should():
    arch = KNOWN_ARCHITECTURES["facebook/xlm-roberta-xxl"]
    base = Resources(workers_per_trial=8, gpus_per_worker=1, strategy="fsdp", precision="bf16")
    plain = per_gpu_memory(arch, base, batch=64, length=512)
    checkpointed = per_gpu_memory(arch, base.model_copy(update={"activation_checkpointing": True}), 64, 512)
    offloaded = per_gpu_memory(arch, base.model_copy(update={"cpu_offload": True}), 64, 512)
    assert checkpointed["activations"] < plain["activations"] / 5
    assert checkpointed["parameters"] == plain["parameters"]
    assert offloaded["optimizer"] == 0 and offloaded["host"] == pytest.approx(16 * arch.params / 8)
    assert offloaded["total"] < plain["total"]
    fp32 = per_gpu_memory(arch, base.model_copy(update={"precision": "fp32", "gpus_per_worker": 1}), 64, 512)
    assert fp32["activations"] == pytest.approx(2 * plain["activations"])


def test_a_cpu_space_has_no_table_and_an_unknown_model_gets_a_note(registry):
    tiny = parse_space({"name": "t", "base_models": [{"name": "tiny"}], "intermediates": ["none"],
                        "targets": ["mb_xnli"], "seeds": [0], "target_training": {"learning_rate": 1e-3}}, registry)
    assert memory_rows(build_plan(tiny, registry)) == ([], [])
    odd = parse_space(SPACE | {"base_models": [{"name": "odd", "source": "someone/not-cached-model"}]}, registry)
    found, notes = memory_rows(build_plan(odd, registry))
    assert found == [] and notes and notes[0].startswith("no memory estimate for odd: ")


def test_the_dry_run_prints_the_table_and_json_carries_it(tmp_path, registry):
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    runner = CliRunner()
    table = runner.invoke(app, ["search", str(path), "--dry-run"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "memory per GPU of a training step" in table.output and "assumptions: fp32 master weights" in table.output
    assert "* xlmr-xxl" in table.output and "141 GB" in table.output
    as_json = runner.invoke(app, ["search", str(path), "--dry-run", "--format", "json"])
    memory = json.loads(as_json.stdout)["memory"]
    assert memory["gpu_sizes_gb"] == [40, 80, 141] and len(memory["rows"]) == 2 * len(MODELS)
    assert {r["model"] for r in memory["rows"]} == set(MODELS) and memory["assumptions"]


def test_gpu_hours_count_evaluation_passes_from_declared_sizes(registry):
    plan = build_plan(parse_space(SPACE, registry), registry)
    capped = build_plan(parse_space(SPACE | {"target_training": SPACE["target_training"] | {"max_eval_examples": 100},
                                             "intermediate_training": SPACE["intermediate_training"]
                                             | {"max_eval_examples": 100}}, registry), registry)
    full, small = estimate(plan), estimate(capped)
    large = full.models[0]
    xnli = next(c for c in plan.cells if c.target == "xnli" and c.base_model.name == "xlmr-large")
    languages = len(xnli.languages)
    # xnli's declared sizes: per cell 3 epochs of dev (2,490 per language) + 2 selected epochs' test (5,010), at 256
    xnli_tokens = 2 * (3 * 2_490 + 2 * 5_010) * languages * 256
    mnli_tokens = 1 * 3 * 9_815 * 128  # the one stage-1 job: MNLI dev each epoch, at stage 1's own length
    assert large.eval_tokens > xnli_tokens + mnli_tokens
    assert small.models[0].eval_tokens < large.eval_tokens / 10  # max_eval_examples bounds them
    assert full.gpu_hours > small.gpu_hours and not [n for n in full.notes if "evaluation passes" in n]


def test_a_task_without_declared_sizes_is_named_as_left_out(registry):
    import dataclasses

    plan = build_plan(parse_space(SPACE, registry), registry)
    undeclared = dataclasses.replace(plan.cells[0].target_task, options={
        k: v for k, v in plan.cells[0].target_task.options.items() if k != "eval_size"})
    plan.cells = [dataclasses.replace(c, target_task=undeclared) if c.target == plan.cells[0].target else c
                  for c in plan.cells]
    cost = estimate(plan)
    assert any(f"evaluation passes not counted for {plan.cells[0].target}" in n for n in cost.notes), cost.notes
