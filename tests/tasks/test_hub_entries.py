"""Every real registry entry, end to end on fixtures in its hub schema: rows come through the entry's real
source (only `datasets.load_dataset` is replaced), its format featurizes them, a tiny XLM-R trains a step on
them (targets: on their training task) and the entry's metric is computed for English and one other language."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests.tasks.hub_fake import LOCAL
from xgrid.formats import get_format
from xgrid.tasks import LoadContext, default_registry
from xgrid.tasks import hub
from xgrid.training.phase import Hparams, PhaseRequest, run_phase

REGISTRY = default_registry()
HP = Hparams(learning_rate=1e-3, epochs=1, batch_size=4, max_length=64, max_train_examples=8, max_eval_examples=8)
LOAD = LoadContext(local_paths=LOCAL)
# Languages with fixtures, per target (the registry lists every XTREME-R language).
EVAL_LANGUAGES = {
    "xnli": ("en", "de"), "pawsx": ("en", "de"), "xcopa": ("en", "et"), "udpos": ("en", "de", "lt"),
    "panx": ("en", "de"), "xquad": ("en", "de", "ro"), "mlqa": ("en", "de"), "tydiqa": ("en", "ar"),
    "bucc2018": ("de",), "tatoeba": ("de", "pl"), "lareqa": ("en", "de"), "mewsli_x": ("en", "de"),
}
# What a hub entry must have read: dataset ids (a check that the rows came through the entry's own source).
READS = {
    "xnli": {"facebook/xnli", "nyu-mll/glue"}, "xcopa": {"cambridgeltl/xcopa", "aps/super_glue"},
    "udpos": {"google/xtreme", "universal-dependencies/universal_dependencies"},
    "xquad": {"google/xtreme", "rajpurkar/squad", "google/xquad"},
    "tatoeba": {"google/xtreme", "mteb/tatoeba-bitext-mining"},
}


def _in_range(metrics: dict, metric: str) -> None:
    assert metric in metrics, metrics
    assert 0.0 <= metrics[metric] <= 100.0 and not math.isnan(metrics[metric])


def test_every_hub_entry_is_tested():
    names = {t.name for t in hub.ENTRIES}
    assert names == {t.name for t in hub.INTERMEDIATES} | set(EVAL_LANGUAGES)
    for task in hub.ENTRIES:
        assert isinstance(task.option("train_size"), int), task.name
        if task.is_target:
            assert task.group in ("classification", "tagging", "qa", "retrieval")


@pytest.mark.parametrize("name", [t.name for t in hub.INTERMEDIATES])
def test_intermediate_entry_trains_and_scores(name, tiny_xlmr, fake_hub):
    task = REGISTRY.get(name)
    if name == "ccg":  # the fixture treebank is tiny: keep every category instead of the >= 10 occurrences
        task = dataclasses.replace(task, options={**task.options, "min_tag_count": 1})
    result = run_phase(PhaseRequest(encoder_source=tiny_xlmr, train_tasks=(task,), hparams=HP, seed=0, load=LOAD))
    _in_range(result.final["english_dev"]["en"], task.metric)
    if task.name not in LOCAL:
        assert fake_hub.calls and all(c["offline"] for c in fake_hub.calls)  # served from the cache


@pytest.mark.parametrize("name", [t.name for t in hub.TARGETS])
def test_target_entry_trains_and_scores_zero_shot(name, tiny_xlmr, fake_hub):
    target = REGISTRY.get(name)
    languages = EVAL_LANGUAGES[name]
    if get_format(target.format).reads_every_language:  # LAReQA's pool spans every language: the fixture's two
        target = dataclasses.replace(target, languages=languages)
    train = (REGISTRY.train_task_of(target),) if REGISTRY.trains(target) else ()
    result = run_phase(PhaseRequest(encoder_source=tiny_xlmr, train_tasks=train, eval_task=target, hparams=HP, seed=0,
                                    eval_languages=languages, load=LOAD))
    scored = result.final["english_dev"]
    assert set(scored) == set(languages) - ({"en"} if name == "xcopa" else set())  # COPA's test set is unlabeled
    for language in scored:
        _in_range(scored[language], target.metric)
    assert READS.get(name, set()) <= fake_hub.paths()
