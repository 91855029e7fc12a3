"""Reading a search back from a real MLflow store (SQLite), written with the names of `xgrid.tracking_schema`.

`build_grid_store` writes a synthetic grid with a planted effect; test_report and test_compare_cli reuse it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from xgrid import tracking_schema as schema
from xgrid.compare.runs import COLUMNS, CompareError, load_runs, primary_metric

EXPERIMENT = "xgrid-planted"
BASE = "tiny-xlmr"
SEEDS = (0, 1, 2)
LRS = (1e-5, 3e-5)
# target -> (format, group, languages, primary metric, extra metrics logged beside it)
TARGETS = {
    "mb_udpos": ("tagging", "tagging", ("en", "xa", "xb"), "f1", ("precision", "recall")),
    "mb_xnli": ("classification", "classification", ("en", "xa", "xb"), "accuracy", ()),
    "mb_tatoeba": ("retrieval", "retrieval", ("xa", "xb"), "accuracy", ()),
}
TASKS = (("mb_chunk", "syntactic"), ("mb_deprel", "syntactic"), ("mb_para", "semantic"), ("mb_qa", "semantic"),
         ("none", "none"))
OWN = ("mb_udpos", "syntactic", "mb_udpos")  # intermediate, kind, the only target it is own data of
# Planted true gains over the baseline: syntactic - semantic = +5 on tagging, -5 on classification, 0 on retrieval.
# The tasks of a kind lie 0.4 apart: with 2 + 2 tasks a t-interval has 2 degrees of freedom, and a planted +-5
# is found (Holm over the 3 targets) only when the tasks of a kind agree closely.
EFFECTS = {
    "mb_udpos": {"mb_chunk": 4.8, "mb_deprel": 5.2, "mb_para": -0.2, "mb_qa": 0.2, "mb_udpos": 40.0},
    "mb_xnli": {"mb_chunk": -0.2, "mb_deprel": 0.2, "mb_para": 4.8, "mb_qa": 5.2},
    "mb_tatoeba": {"mb_chunk": 1.8, "mb_deprel": 2.2, "mb_para": 1.8, "mb_qa": 2.2},
}
PLANTED = {"mb_udpos": 5.0, "mb_xnli": -5.0, "mb_tatoeba": 0.0}
LANG_EFFECT = {"en": 0.0, "xa": -10.0, "xb": -20.0}
ORACLE_BONUS = 0.5  # target-dev selection scores a little higher, same contrast

TIE_CELL = ("mb_chunk", "mb_xnli", 0)  # both trials tie on best.english_dev: the lower learning rate wins
RUNNING_CELL = ("mb_para", "mb_xnli", 2)  # both trials still running: no result yet
FAILED_IN = ("mb_deprel", "mb_udpos", 0)  # + a FAILED trial with a higher best.english_dev
RUNNING_IN = ("mb_qa", "mb_udpos", 1)  # + a RUNNING trial with a higher best.english_dev (and finals)
KILLED_IN = ("mb_chunk", "mb_udpos", 2)  # + a KILLED (stopped) trial with a higher best.english_dev


def cell_id(intermediate: str, target: str, seed: int) -> str:
    return hashlib.sha256(f"{BASE}|{intermediate}|{target}|{seed}".encode()).hexdigest()[:10]


@dataclass
class GridStore:
    uri: str
    root: Path
    experiment_id: str
    parent_id: str
    winners: dict[str, str] = field(default_factory=dict)  # cell id -> run id that must be selected
    winner_lr: dict[str, float] = field(default_factory=dict)
    n_runs: int = 0


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _new_run(client, exp_id, tags, metrics=None, params=None, status="FINISHED"):
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 1) for k, v in (metrics or {}).items()],
                     params=[Param(k, str(v)) for k, v in (params or {}).items()])
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _finals(metric, scores, oracle_scores, extras=()):
    """Final metrics as the trainer flattens them: declared policy plain, the other prefixed."""
    out = {}
    for prefix, by_lang in (("", scores), ("target_dev.", oracle_scores)):
        if by_lang is None:
            continue
        for name in (metric, *extras):
            shift = 0.0 if name == metric else -3.0
            for lang, v in by_lang.items():
                out[f"{prefix}{name}.{lang}"] = v + shift
            out[f"{prefix}{name}.avg"] = float(np.mean(list(by_lang.values()))) + shift
            xling = [v for lang, v in by_lang.items() if lang != "en"]
            out[f"{prefix}{name}.avg_xling"] = float(np.mean(xling)) + shift
    return out


def build_grid_store(root: Path, experiment: str = EXPERIMENT) -> GridStore:
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = _client(uri)
    exp_id = client.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(exp_id, tags={schema.STAGE: schema.SEARCH_STAGE, "search_id": "s1",
                                             schema.POLICY_TAG: "english_dev"}).info.run_id
    store = GridStore(uri, root, exp_id, parent)
    rng = np.random.default_rng(7)
    common = {schema.PARENT_TAG: parent, "search_id": "s1", schema.POLICY_TAG: "english_dev",
              "retrieval_layer": "last", "retrieval_pooling": "mean"}
    # stage-1 runs: same experiment, must be ignored by the reader
    for name, kind in TASKS[:2]:
        _new_run(client, exp_id, common | {schema.STAGE: schema.STAGE1, "intermediate": name, schema.KIND_TAG: kind,
                                           "seed": "0", "stage1_key": name},
                 {"dev.mb_chunk.f1": 50.0, "f1.avg": 99.0}, {"learning_rate": 1e-4})
    cell_no = 0
    for target, (fmt, group, langs, metric, extras) in TARGETS.items():
        tasks = list(TASKS) + ([OWN[:2]] if OWN[2] == target else [])
        for intermediate, kind in tasks:
            for seed in SEEDS:
                cid = cell_id(intermediate, target, seed)
                tags = common | {schema.STAGE: schema.RETRIEVAL if fmt == "retrieval" else schema.STAGE2,
                                 "cell_id": cid, "base_model": BASE, "intermediate": intermediate,
                                 "intermediate_tasks": intermediate, schema.KIND_TAG: kind, "target": target,
                                 "target_format": fmt, "target_group": group, "seed": str(seed),
                                 "stage1_key": f"k-{intermediate}-{seed}",
                                 "own_data": str(intermediate == OWN[0] and target == OWN[2]).lower()}
                effect = EFFECTS[target].get(intermediate, 0.0) + rng.normal(0.0, 0.3)
                true = {l: 70.0 + LANG_EFFECT[l] + effect + rng.normal(0.0, 0.2) for l in langs}
                oracle = {l: v + ORACLE_BONUS + rng.normal(0.0, 0.1) for l, v in true.items()}
                key = (intermediate, target, seed)
                if fmt == "retrieval":
                    rid = _new_run(client, exp_id, tags | {"trial_id": f"retrieval-{cid}",
                                                           schema.STATUS_TAG: "completed"},
                                   _finals(metric, true, None) | {"seconds": 1.0})
                    store.winners[cid], store.winner_lr[cid] = rid, float("nan")
                    store.n_runs += 1
                    continue
                # Two learning rates; the trial with the higher best.english_dev holds the true scores, the other
                # one scores that would destroy the planted contrast if it were picked.
                winner = cell_no % 2
                cell_no += 1
                if key == TIE_CELL:
                    winner = 0
                wrong = {"syntactic": -30.0, "semantic": 30.0, "none": 15.0}[kind]
                for i, lr in enumerate(LRS):
                    won = i == winner
                    best = 80.0 if (won or key == TIE_CELL) else 75.0
                    scores = true if won else {l: v + wrong for l, v in true.items()}
                    orc = oracle if won else {l: v + wrong for l, v in oracle.items()}
                    status = "RUNNING" if key == RUNNING_CELL else "FINISHED"
                    metrics = {"train_loss": 0.5, f"dev.{metric}.en": best, "select.english_dev": best,
                               "select.target_dev": best - 1.0}
                    trial_tags = tags | {"trial_id": f"t-{cid}-{i}"}
                    if status == "FINISHED":
                        metrics |= _finals(metric, scores, orc, extras) | {"best.english_dev": best,
                                                                           "best.target_dev": best - 1.0}
                        trial_tags[schema.STATUS_TAG] = "completed"
                    rid = _new_run(client, exp_id, trial_tags, metrics,
                                   {"learning_rate": lr, "epochs": 2, "batch_size": 8}, status)
                    store.n_runs += 1
                    if won and status == "FINISHED":
                        store.winners[cid], store.winner_lr[cid] = rid, lr
                garbage = {l: 0.0 for l in langs}
                for special, status, trial_status in ((FAILED_IN, "FAILED", "failed"), (RUNNING_IN, "RUNNING", None),
                                                      (KILLED_IN, "KILLED", "stopped")):
                    if key != special:
                        continue
                    extra_tags = tags | {"trial_id": f"t-{cid}-x"}
                    if trial_status:
                        extra_tags[schema.STATUS_TAG] = trial_status
                    _new_run(client, exp_id, extra_tags,
                             _finals(metric, garbage, garbage, extras) | {"best.english_dev": 99.0,
                                                                          "best.target_dev": 99.0},
                             {"learning_rate": 5e-6}, status)
                    store.n_runs += 1
    return store


_STORES: dict[str, GridStore] = {}


@pytest.fixture(scope="session")
def grid_store(tmp_path_factory) -> GridStore:
    """One planted grid per test session, shared by the three compare test modules."""
    if "grid" not in _STORES:
        _STORES["grid"] = build_grid_store(tmp_path_factory.mktemp("mlflow_grid"))
    return _STORES["grid"]


@pytest.fixture(scope="session")
def grid_runs(grid_store):
    return load_runs(EXPERIMENT, grid_store.uri)


# ---------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------


def test_columns_and_types(grid_runs):
    assert list(grid_runs.columns[:13]) == ["base_model", "target", "target_group", "target_format", "policy",
                                            "intermediate", "kind", "seed", "language", "score", "own_data",
                                            "run_id", "learning_rate"]
    assert list(grid_runs.columns) == COLUMNS
    assert grid_runs["seed"].dtype.kind == "i"
    assert grid_runs["own_data"].dtype == bool
    assert set(grid_runs["stage"]) == {schema.STAGE2, schema.RETRIEVAL}  # stage-1 runs left out
    # one row per (cell, policy, language)
    assert not grid_runs.duplicated(["cell_id", "policy", "language"]).any()


def test_selects_the_trial_with_the_best_english_dev_score(grid_store, grid_runs):
    chosen = grid_runs.groupby("cell_id")["run_id"].unique()
    assert all(len(ids) == 1 for ids in chosen)
    chosen = chosen.map(lambda ids: ids[0]).to_dict()
    assert chosen == grid_store.winners  # the RUNNING cell has no winner and no row
    # the winners alternate between the two learning rates, so "lowest lr" alone would not pass
    lrs = grid_runs.drop_duplicates("cell_id").set_index("cell_id")["learning_rate"].dropna()
    assert set(lrs) == set(LRS)
    for cid, lr in lrs.items():
        assert lr == grid_store.winner_lr[cid]


def test_tie_goes_to_the_lowest_learning_rate(grid_store, grid_runs):
    cid = cell_id(*TIE_CELL)
    rows = grid_runs[grid_runs["cell_id"] == cid]
    assert set(rows["learning_rate"]) == {min(LRS)}
    assert set(rows["run_id"]) == {grid_store.winners[cid]}


def test_running_failed_and_stopped_runs_are_never_selected(grid_runs):
    assert cell_id(*RUNNING_CELL) not in set(grid_runs["cell_id"])
    for key in (FAILED_IN, RUNNING_IN, KILLED_IN):
        rows = grid_runs[grid_runs["cell_id"] == cell_id(*key)]
        assert not rows.empty and (rows["learning_rate"] != 5e-6).all() and (rows["score"] > 1.0).all()
    counts = grid_runs.attrs["counts"]
    assert counts["running"] == 3  # the two trials of the running cell + one beside a finished cell
    assert counts["failed"] == 1 and counts["killed"] == 1
    assert counts["pending_cells"] == 1 and counts["empty_cells"] == 0
    n_cells = 3 * 5 * len(TARGETS) + 3
    assert counts["cells"] == n_cells and counts["selected"] == n_cells - 1
    assert counts["not_selected"] == 5 * 3 * 2 + 3 - 1  # the losing trial of each stage-2 cell with a result
    assert grid_runs.attrs["experiment"] == EXPERIMENT
    assert grid_runs.attrs["metrics"] == {"mb_udpos": "f1", "mb_xnli": "accuracy", "mb_tatoeba": "accuracy"}


def test_both_policies_and_languages(grid_runs):
    for target, (fmt, _, langs, metric, _) in TARGETS.items():
        rows = grid_runs[grid_runs["target"] == target]
        assert set(rows["language"]) == set(langs)  # avg / avg_xling / precision.* never become languages
        assert set(rows["metric"]) == {metric}
        expected = {"english_dev"} if fmt == "retrieval" else {"english_dev", "target_dev"}
        assert set(rows["policy"]) == expected
    # the other policy's scores are its own, not copies of the declared ones
    stage2 = grid_runs[grid_runs["target"] == "mb_xnli"].pivot_table(
        index=["cell_id", "language"], columns="policy", values="score")
    diff = stage2["target_dev"] - stage2["english_dev"]
    assert abs(diff.mean() - ORACLE_BONUS) < 0.1


def test_own_data_and_kinds(grid_runs):
    own = grid_runs[grid_runs["own_data"]]
    assert set(zip(own["intermediate"], own["target"])) == {("mb_udpos", "mb_udpos")}
    assert set(grid_runs["kind"]) == {"syntactic", "semantic", "none"}


def test_experiment_by_numeric_id(grid_store):
    df = load_runs(grid_store.experiment_id, grid_store.uri)
    assert df.attrs["experiment"] == EXPERIMENT and len(df) > 0


def test_unknown_experiment_suggests_a_close_name(grid_store):
    with pytest.raises(CompareError) as info:
        load_runs("xgrid-plantde", grid_store.uri)
    message = str(info.value)
    assert "did you mean 'xgrid-planted'" in message and "\n" not in message


def test_missing_sqlite_store_is_an_error_and_not_created(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(CompareError, match="no MLflow store"):
        load_runs("x", f"sqlite:///{db}")
    assert not db.exists()


def test_experiment_without_stage2_runs(grid_store):
    client = _client(grid_store.uri)
    exp = client.create_experiment("xgrid-empty", artifact_location=(grid_store.root / "a2").as_uri())
    client.create_run(exp, tags={schema.STAGE: schema.SEARCH_STAGE})
    with pytest.raises(CompareError, match="no stage-2 or retrieval runs"):
        load_runs("xgrid-empty", grid_store.uri)


def test_primary_metric_rules():
    finals = {"f1.avg": 1.0, "precision.avg": 1.0, "target_dev.f1.avg": 1.0, "best.english_dev": 1.0,
              "dev.f1.avg": 1.0}
    assert primary_metric({"target": "mb_udpos"}, finals) == "f1"  # the registry decides
    assert primary_metric({"target": "mine", "target_metric": "precision"}, finals) == "precision"  # the tag
    assert primary_metric({"target": "mine"}, {"acc.avg": 1.0, "acc.de": 1.0}) == "acc"  # the only one
    assert primary_metric({"target": "mine"}, {"select.english_dev": 1.0}) is None
    with pytest.raises(CompareError, match="f1.avg, precision.avg"):
        primary_metric({"target": "mine"}, finals)


def test_only_a_cell_with_a_choice_to_make_counts_as_unranked(tmp_path):
    """A retrieval evaluation is one run per cell that logs both policies' finals and no best.<policy>: there
    is nothing to choose, so it is not reported as "log no best.<policy>". A cell of two trials without
    best.target_dev is: its target_dev rows fall back to the declared policy's pick."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = _client(uri)
    exp_id = client.create_experiment("unranked", artifact_location=(tmp_path / "art").as_uri())
    common = {schema.POLICY_TAG: "english_dev", "search_id": "s1", "base_model": BASE, "intermediate": "none",
              "intermediate_tasks": "", schema.KIND_TAG: "none", "seed": "0", "stage1_key": "k",
              "own_data": "false"}
    scores = {"en": 60.0, "xa": 50.0}
    _new_run(client, exp_id, common | {schema.STAGE: schema.RETRIEVAL, "cell_id": "retrieval-cell",
                                       "target": "mb_tatoeba", "target_format": "retrieval",
                                       "target_group": "retrieval", schema.STATUS_TAG: "completed"},
             _finals("accuracy", scores, scores))
    for lr, best in ((1e-4, 70.0), (3e-4, 75.0)):
        _new_run(client, exp_id, common | {schema.STAGE: schema.STAGE2, "cell_id": "trained-cell",
                                           "target": "mb_xnli", "target_format": "classification",
                                           "target_group": "classification", schema.STATUS_TAG: "completed"},
                 _finals("accuracy", scores, scores) | {"best.english_dev": best}, {"learning_rate": lr})
    counts = load_runs("unranked", uri).attrs["counts"]
    assert counts["cells"] == 2 and counts["unranked_policy_cells"] == 1


def test_a_budgeted_search_parent_run_gives_its_decisions():
    from xgrid.compare.runs import budget_of
    from xgrid.tracking import RunRecord

    parent = RunRecord("p", "FINISHED", tags={schema.BUDGET_METHOD_TAG: "group-sequential ...",
                                              "budget.udpos.de.status": "syntactic higher",
                                              "budget.udpos.de.round": "1"},
                       metrics={"budget.udpos.de.low": 1.5, "budget.udpos.de.high": 9.0,
                                "budget.spent.stage2_trials": 36.0, "budget.fixed.stage2_trials": 72.0})
    budget = budget_of(parent)
    assert budget["targets"] == {"udpos.de": {"status": "syntactic higher", "round": "1", "low": 1.5, "high": 9.0}}
    assert budget["spent"] == {"stage2_trials": 36} and budget["fixed"] == {"stage2_trials": 72}
    assert budget_of(RunRecord("q", "FINISHED", tags={})) is None  # a search without a budget
