"""What a plan reads, from the plan itself: prefetch fetches exactly the splits the phases will load."""

from xgrid.config import parse_space
from xgrid.planning.needs import dataset_needs
from xgrid.planning.plan import build_plan

SPACE = {"name": "needs", "base_models": [{"name": "xl", "source": "facebook/xlm-roberta-xl"}],
         "intermediates": ["none", "mnli"], "targets": ["udpos.th", "lareqa.de", "bucc2018"], "seeds": [0, 1],
         "target_training": {"learning_rate": 1e-5}}


def needs(registry, **changes):
    plan = build_plan(parse_space(SPACE | changes, registry), registry)
    return {(n.task, n.language, n.role) for _, n in dataset_needs(plan)}


def test_intermediates_and_training_tasks_read_english_train_and_dev(registry):
    found = needs(registry)
    assert {("mnli", "en", "train"), ("mnli", "en", "dev")} <= found
    assert {("udpos", "en", "train"), ("udpos", "en", "dev")} <= found  # UD-POS fine-tunes on its English data
    assert not any(task == "mnli" and role == "test" for task, _, role in found)
    assert not any(task == "bucc2018" and role == "train" and lang == "en" for task, lang, role in found)


def test_a_selected_language_reads_that_language_and_english_only(registry):
    udpos = {(lang, role) for task, lang, role in needs(registry) if task == "udpos"}
    assert {lang for lang, _ in udpos} == {"en", "th"}  # English dev selects the checkpoint


def test_a_pool_of_every_language_is_read_whichever_language_is_evaluated(registry):
    lareqa = {lang for task, lang, role in needs(registry) if task == "lareqa" and role == "test"}
    assert lareqa == set(registry.get("lareqa").languages)


def test_every_language_of_an_unselected_target(registry):
    bucc = {lang for task, lang, role in needs(registry) if task == "bucc2018" and role == "test"}
    assert bucc == set(registry.get("bucc2018").languages)
