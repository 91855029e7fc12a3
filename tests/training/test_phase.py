"""One phase as a plain function, and the three X-STILTs phases chained through it on the embedded benchmark
with the tiny model: each format learns (English dev well above chance) and every target language is scored."""

import pytest
from typer.testing import CliRunner

from xgrid.config import parse_space
from xgrid.planning.plan import build_plan
from xgrid.running.local import ensure_stage1, fine_tune_target, run_cell
from xgrid.running.store import CheckpointStore
from xgrid.training.phase import Hparams, PhaseRequest, run_phase

INTERMEDIATE = {"learning_rate": 0.002, "epochs": 3, "batch_size": 32, "max_length": 64}
TARGET = {"learning_rate": 0.0015, "epochs": 4, "batch_size": 32, "max_length": 64}


def space_for(intermediates, targets, registry, **extra):
    return parse_space({"name": "phase-test", "base_models": [{"name": "tiny"}], "intermediates": intermediates,
                        "targets": targets, "seeds": [0], "intermediate_training": INTERMEDIATE,
                        "target_training": TARGET} | extra, registry)


def cell_and_job(space, registry, intermediate, target):
    plan = build_plan(space, registry)
    cell = next(c for c in plan.cells if c.intermediate == intermediate and c.target == target)
    return cell, next(j for j in plan.jobs if j.key == cell.stage1_key)


# (intermediate, its English-dev floor, target, the target's English floor); chance in brackets.
CHAINS = [
    ("mb_para", 65.0, "mb_xnli", 45.0),      # classification: paraphrase [50] -> NLI [33.3]
    ("mb_deprel", 80.0, "mb_udpos", 60.0),   # tagging: F1 [a few points for one tag everywhere]
    ("mb_qa", 20.0, "mb_xquad", 20.0),       # span QA: F1 [about 5 for a random span]
    ("mb_choice", 38.0, "mb_tatoeba", None),  # multiple choice [25] -> retrieval (scored, not trained)
]


@pytest.mark.parametrize("intermediate,inter_floor,target,target_floor", CHAINS, ids=[c[2] for c in CHAINS])
def test_three_phases_learn_and_score_every_language(tmp_path, registry, store_root, intermediate, inter_floor,
                                                     target, target_floor):
    space = space_for(["none", intermediate], [target], registry)
    cell, job = cell_and_job(space, registry, intermediate, target)
    stage1, result = run_cell(cell, job, 0.0015, space, store_root)
    assert stage1.trained or CheckpointStore(store_root).has(job.key)
    if stage1.result is not None:  # trained in this test (not reused from an earlier one)
        assert stage1.result.history[-1]["select.english_dev"] > inter_floor
    task = registry.get(target)
    scores = result.scores()
    assert set(scores) == set(task.languages)  # every language of the target has its metric
    assert set(result.scores("target_dev")) == set(task.languages)  # and under the oracle policy too
    if target_floor is not None:
        assert scores["en"] > target_floor
        assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    else:
        assert scores["xa"] > 20.0  # accuracy@1 [0.5]


def test_phase_is_deterministic_under_a_seed(registry, tiny_model):
    task = registry.get("mb_udpos")

    def run(seed):
        return run_phase(PhaseRequest(tiny_model, (task,), Hparams(0.002, epochs=2, max_length=48,
                                                                    max_train_examples=120, max_eval_examples=40),
                                      seed, eval_task=task))

    first, again, other = run(0), run(0), run(1)
    assert first.history == again.history and first.final == again.final
    assert first.history != other.history


def test_selection_policies_pick_epochs_from_their_own_dev_scores(registry, tiny_model):
    task = registry.get("mb_udpos")
    result = run_phase(PhaseRequest(tiny_model, (task,), Hparams(0.002, epochs=3, max_length=48,
                                                                  max_train_examples=150, max_eval_examples=40),
                                    0, eval_task=task, selection_policy="target_dev"))
    for policy in ("english_dev", "target_dev"):
        best = max(result.history, key=lambda h: h[f"select.{policy}"])
        assert result.selected_epoch[policy] == best["epoch"]
    flat = result.flat_metrics()
    assert "f1.xc" in flat and "english_dev.f1.xc" in flat  # declared policy plain, the other one prefixed
    assert flat["f1.avg_xling"] == pytest.approx(sum(flat[f"f1.{l}"] for l in ("xa", "xb", "xc")) / 3)


def test_a_task_added_as_one_registry_entry_is_listed_and_trained(monkeypatch, tmp_path):
    """Adding a task = one TaskSpec in an entry module. Nothing else is edited."""
    import xgrid.tasks.embedded as embedded
    from xgrid.cli import app
    from xgrid.tasks import TaskSpec, default_registry
    from xgrid.data.sources import EmbeddedSource

    entry = TaskSpec("mb_pos_from_chunk", "tagging", "syntactic", ("en",), EmbeddedSource("mb_chunk"), "f1",
                     "PTB POS tags of the chunking data", options={"tags": "pos_tags"})
    monkeypatch.setattr(embedded, "ENTRIES", embedded.ENTRIES + (entry,))
    listed = CliRunner().invoke(app, ["tasks", "--kind", "syntactic"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "mb_pos_from_chunk" in listed.output
    registry = default_registry()
    space = space_for(["none", "mb_pos_from_chunk"], ["mb_udpos"], registry,
                      intermediate_training=INTERMEDIATE | {"epochs": 1, "max_train_examples": 300})
    cell, job = cell_and_job(space, registry, "mb_pos_from_chunk", "mb_udpos")
    stage1 = ensure_stage1(job, space, CheckpointStore(tmp_path))
    assert stage1.trained and stage1.result.final["english_dev"]["en"]["f1"] > 0
    result = fine_tune_target(cell, 0.0015, stage1.encoder, space)
    assert set(result.scores()) == {"en", "xa", "xb", "xc"}


def test_multi_task_intermediate_trains_one_head_per_task(registry, tiny_model, tmp_path):
    tasks = (registry.get("mb_chunk"), registry.get("mb_para"))
    result = run_phase(PhaseRequest(tiny_model, tasks, Hparams(0.002, epochs=2, max_length=48, max_train_examples=150,
                                                                max_eval_examples=40), 0,
                                    output_dir=str(tmp_path / "encoder")))
    final = result.final["english_dev"]["en"]
    assert {"mb_chunk.f1", "mb_para.accuracy"} <= set(final)  # each task scored by its own head and metric
    assert set(result.history[0]) >= {"dev.mb_chunk.f1", "dev.mb_para.accuracy", "select.english_dev"}
    # The selection score is the mean of the tasks' primary metrics.
    epoch = result.history[result.selected_epoch["english_dev"] - 1]
    assert epoch["select.english_dev"] == pytest.approx((epoch["dev.mb_chunk.f1"] + epoch["dev.mb_para.accuracy"]) / 2)
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
