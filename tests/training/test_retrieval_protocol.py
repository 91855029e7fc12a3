"""A retrieval target under XTREME-R's protocol: the phase fine-tunes the encoder on a declared task (here the
micro-benchmark's SQuAD-style mb_qa), selects the epoch on that task's English dev, and scores the retrieval
target with the selected epoch's encoder, under the same final metric names as a retrieval target scored
straight from the encoder (XTREME), which a request without train tasks still does exactly as before."""

import numpy as np
import pytest
from safetensors.torch import load_file

from xgrid.formats import RetrievalSettings, get_format
from xgrid.models.loading import load_encoder, load_tokenizer
from xgrid.training.context import LocalContext
from xgrid.training.data import load_split
from xgrid.training.phase import Hparams, PhaseRequest, run_phase

# Small enough for a CPU test, enough steps for the encoder to move.
HPARAMS = Hparams(0.002, epochs=2, batch_size=16, max_length=64, max_train_examples=96, max_eval_examples=40)


def run_reported(request):
    reports = []
    return run_phase(request, LocalContext(reports.append)), reports


@pytest.fixture(scope="module")
def fine_tuned(registry, tiny_model, tmp_path_factory):
    """mb_tatoeba after fine-tuning on mb_qa; the selected encoder is saved, to compare it with the stage-1 one."""
    saved = tmp_path_factory.mktemp("selected") / "encoder"
    request = PhaseRequest(tiny_model, (registry.get("mb_qa"),), HPARAMS, 0, eval_task=registry.get("mb_tatoeba"),
                           output_dir=str(saved))
    result, reports = run_reported(request)
    return request, result, reports, saved


def untrained(request):
    return PhaseRequest(request.encoder_source, (), request.hparams, request.seed, eval_task=request.eval_task,
                        selection_policy=request.selection_policy)


def test_fine_tunes_on_the_declared_task_and_scores_every_language(fine_tuned, registry, tiny_model):
    request, result, reports, saved = fine_tuned
    target = registry.get("mb_tatoeba")
    # The selected encoder is not the stage-1 encoder.
    before, after = load_file(f"{tiny_model}/model.safetensors"), load_file(f"{saved}/model.safetensors")
    assert set(before) == set(after)
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    # Per-epoch records like a trained stage-2 trial's, selected on the fine-tuning task's English dev.
    assert [h["epoch"] for h in result.history] == [1, 2]
    for record in result.history:
        assert {"train_loss", "dev.mb_qa.f1", "select.english_dev", "select.target_dev"} <= set(record)
        assert record["select.english_dev"] == record["dev.mb_qa.f1"]
        assert record["select.target_dev"] == record["select.english_dev"]  # no target dev for retrieval
    assert [r["epoch"] for r in reports] == [1, 2]  # the scheduler hears every epoch
    assert all("select.english_dev" in r for r in reports)
    best = max(result.history, key=lambda h: h["select.english_dev"])["epoch"]
    assert result.selected_epoch == {"english_dev": best, "target_dev": best}
    # The target's own metric, for every language, under both policies.
    assert result.metric == target.metric
    for policy in ("english_dev", "target_dev"):
        assert set(result.final[policy]) == set(target.languages)
        assert all("accuracy" in m for m in result.final[policy].values())
    flat = reports[-1]
    assert {f"accuracy.{lang}" for lang in target.languages} <= set(flat)
    assert {"accuracy.avg", "accuracy.avg_xling", "target_dev.accuracy.avg", "best.english_dev"} <= set(flat)


def test_scores_are_the_selected_encoders(fine_tuned):
    """The final scores are what scoring the saved (selected) encoder straight gives: it is that epoch's."""
    request, result, _, saved = fine_tuned
    straight = run_phase(PhaseRequest(str(saved), (), request.hparams, request.seed, eval_task=request.eval_task))
    assert result.final["english_dev"] == straight.final["english_dev"]


def test_scores_differ_from_the_encoder_without_fine_tuning(fine_tuned):
    request, result, _, _ = fine_tuned
    before = run_phase(untrained(request))
    assert result.final["english_dev"] != before.final["english_dev"]
    assert set(result.final["english_dev"]) == set(before.final["english_dev"])


def test_target_dev_policy_selects_on_the_fine_tuning_tasks_english_dev(registry, tiny_model):
    hp = Hparams(0.002, epochs=1, batch_size=16, max_length=64, max_train_examples=16, max_eval_examples=16)
    request = PhaseRequest(tiny_model, (registry.get("mb_qa"),), hp, 0, eval_task=registry.get("mb_tatoeba"),
                           selection_policy="target_dev")
    result, reports = run_reported(request)
    assert result.selected_epoch == {"english_dev": 1, "target_dev": 1}
    assert "select.target_dev" in reports[-1] and "best.target_dev" in reports[-1]
    # The declared policy's names are plain, the other's prefixed, as for any target.
    assert "accuracy.xa" in reports[-1] and "english_dev.accuracy.xa" in reports[-1]


def test_without_train_tasks_the_target_is_scored_from_the_encoder_as_before(registry, tiny_model):
    """Today's path, computed independently: each language's test rows through the format with the encoder as it
    is, the same scores under both policies, epoch 0 selected, one report with the flat final metrics."""
    task = registry.get("mb_tatoeba")
    request = PhaseRequest(tiny_model, (), HPARAMS, 0, eval_task=task)
    result, reports = run_reported(request)
    encoder, tokenizer = load_encoder(tiny_model), load_tokenizer(tiny_model)
    settings = RetrievalSettings(request.retrieval.layer, request.retrieval.pooling, HPARAMS.batch_size,
                                 HPARAMS.max_length)
    expected = {lang: get_format(task.format).evaluate_encoder(
                    encoder, tokenizer, load_split(task, lang, "test", request.load, HPARAMS.max_eval_examples), task,
                    lang, settings, "cpu", load=request.load)
                for lang in task.languages}
    assert result.final == {"english_dev": expected, "target_dev": expected}
    assert result.history == [] and result.selected_epoch == {"english_dev": 0, "target_dev": 0}
    assert result.metric == task.metric
    assert reports == [{"epoch": 0, **result.flat_metrics()}]


def test_a_scored_task_cannot_be_a_train_task(registry, tiny_model):
    with pytest.raises(ValueError, match="mb_tatoeba.*scored"):
        PhaseRequest(tiny_model, (registry.get("mb_tatoeba"),), HPARAMS, 0, eval_task=registry.get("mb_tatoeba"))
