"""Small searches written to a real MLflow store (SQLite) in xgrid's schema, cell by cell, for the tests of
selection, searches and degenerate cells. Task names are the registry's embedded ones, so chance, format and
training size come from the registry as they do for a real search."""

from __future__ import annotations

from typing import Callable

from xgrid import tracking_schema as schema
from tests.compare.test_runs import _client, _new_run

TARGET = "mb_xnli"  # classification, accuracy, chance 33.3
LANGUAGES = ("en", "xa", "xb")
LANGUAGE_OFFSET = {"en": 20.0, "xa": 5.0, "xb": 0.0}
TASKS = {"mb_chunk": "syntactic", "mb_deprel": "syntactic", "mb_para": "semantic", "mb_qa": "semantic",
         "none": "none"}
BASELINE = 50.0


def finals(scores: dict[str, float], policy: str = "") -> dict[str, float]:
    prefix = f"{policy}." if policy else ""
    out = {f"{prefix}accuracy.{lang}": v for lang, v in scores.items()}
    out[f"{prefix}accuracy.avg"] = sum(scores.values()) / len(scores)
    return out


def new_experiment(uri: str, name: str, root) -> str:
    return _client(uri).create_experiment(name, artifact_location=(root / f"art-{name}").as_uri())


def write_search(uri: str, exp_id: str, search_id: str | None, gains: dict[str, float], seeds=(0, 1, 2),
                 score: Callable[[str, int, str], float] | None = None, trials: Callable | None = None,
                 stage1_dev: dict[str, float] | None = None, cell_salt: str = "") -> str:
    """One search: a parent run, and per (task, seed) a stage-2 run of TARGET (or the runs `trials` gives).

    ``gains``: task -> gain over the baseline in every language; ``score(task, seed, language)`` overrides a
    score; ``trials(task, seed, scores) -> [(learning rate, best.english_dev, best.target_dev, english scores,
    target-dev scores)]`` writes several trials for a cell; ``stage1_dev``: task -> the English dev accuracy/f1
    its stage-1 run logs; ``search_id`` None: runs written before the tag existed. Returns the parent run id."""
    client = _client(uri)
    search_tag = {schema.SEARCH_ID_TAG: search_id} if search_id is not None else {}
    parent = _new_run(client, exp_id, {schema.STAGE: schema.SEARCH_STAGE, schema.POLICY_TAG: schema.ENGLISH_DEV}
                      | search_tag, status="FINISHED")
    common = {schema.PARENT_TAG: parent, schema.POLICY_TAG: schema.ENGLISH_DEV} | search_tag
    for task, dev in (stage1_dev or {}).items():
        for seed in seeds:
            _new_run(client, exp_id, common | {schema.STAGE: schema.STAGE1, schema.INTERMEDIATE_TAG: task,
                                               schema.INTERMEDIATE_TASKS_TAG: task, schema.KIND_TAG: TASKS[task],
                                               schema.SEED_TAG: str(seed), schema.STAGE1_KEY_TAG: f"k-{task}-{seed}"},
                     {"f1" if TASKS[task] == "syntactic" else "accuracy": dev, "train_loss": 0.1})
    for task, kind in TASKS.items():
        for seed in seeds:
            scores = {lang: (score(task, seed, lang) if score else None) for lang in LANGUAGES}
            scores = {lang: v if v is not None else BASELINE + LANGUAGE_OFFSET[lang] + gains.get(task, 0.0)
                      + 0.1 * seed for lang, v in scores.items()}
            tags = common | {schema.STAGE: schema.STAGE2, schema.CELL_TAG: f"{search_id or 'old'}{cell_salt}-{task}-{seed}",
                             schema.BASE_MODEL_TAG: "tiny", schema.INTERMEDIATE_TAG: task,
                             schema.INTERMEDIATE_TASKS_TAG: task, schema.KIND_TAG: kind, schema.TARGET_TAG: TARGET,
                             schema.TARGET_FORMAT_TAG: "classification", schema.TARGET_GROUP_TAG: "classification",
                             schema.SEED_TAG: str(seed), schema.STAGE1_KEY_TAG: f"k-{task}-{seed}",
                             schema.OWN_DATA_TAG: "false", schema.STATUS_TAG: "completed",
                             schema.METRIC_TAG: "accuracy"}
            for lr, best_en, best_tgt, en_scores, tgt_scores in (trials(task, seed, scores) if trials else
                                                                 [(1e-5, 80.0, 79.0, scores, scores)]):
                _new_run(client, exp_id, tags, finals(en_scores) | finals(tgt_scores, schema.TARGET_DEV)
                         | {"best.english_dev": best_en, "best.target_dev": best_tgt},
                         {schema.LEARNING_RATE: lr})
    return parent
