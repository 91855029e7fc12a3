"""Controls beside the contrast, read back from a real MLflow store: each task's format and training size, a
warning when kind and format coincide, and degenerate cells (a constant predictor, a score at chance, a stage-1
checkpoint at chance, a baseline that did not learn) reported and left out instead of averaged in."""

from __future__ import annotations

import pandas as pd
import pytest

from xgrid.compare.report import build_report, write_report
from xgrid.compare.runs import load_runs
from tests.compare.stores import BASELINE, LANGUAGE_OFFSET, new_experiment, write_search

GAINS = {"mb_chunk": 5.0, "mb_deprel": 5.4, "mb_para": 0.0, "mb_qa": 0.4}  # syntactic - semantic = +5 exactly


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    return f"sqlite:///{root / 'mlflow.db'}", root


def _report(store, name, **kwargs):
    uri, root = store
    write_search(uri, new_experiment(uri, name, root), "s1", GAINS, **kwargs)
    return build_report(load_runs(name, uri))


def declared(rep) -> str:
    """The answer under English-dev selection (the runs report both policies)."""
    (line,) = [line for line in rep.headline if line.startswith("policy=english_dev: ")]
    return line


def english_dev(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["policy"] == "english_dev"]


def _collapsed(task, seed, language):
    if (task, seed) == ("mb_para", 0):
        return 37.0  # one class predicted for every input: the same accuracy in every language
    if (task, seed) == ("mb_qa", 1) and language != "en":
        return 33.6  # learned English, nothing transferred: chance (33.3) in the zero-shot languages
    return None


def test_tasks_show_format_and_training_size_and_the_confound(store):
    rep = _report(store, "clean")
    assert set(rep.tasks["policy"]) == {"english_dev", "target_dev"}
    tasks = english_dev(rep.tasks).set_index("intermediate")
    assert tasks.loc["mb_chunk", "format"] == "tagging" and tasks.loc["mb_para", "format"] == "classification"
    assert tasks.loc["mb_qa", "format"] == "span_qa"
    assert (tasks["train_size"] == 2000).all()  # the embedded tasks, counted
    assert tasks.loc["mb_deprel", "mean_gain"] == pytest.approx(5.4) and (tasks["n_seeds"] == 3).all()
    confound = [n for n in rep.notes if n.startswith("kind is confounded with format")]
    assert len(confound) == 1
    assert "syntactic tasks are tagging (tagging: mb_chunk, mb_deprel)" in confound[0]
    assert "classification: mb_para; span_qa: mb_qa" in confound[0]
    assert rep.degenerate.empty and "degenerate" not in " ".join(rep.headline)
    assert "syntactic higher: mb_xnli +5.00" in declared(rep)


def test_constant_and_chance_cells_are_left_out_and_named(store, tmp_path):
    rep = _report(store, "collapsed", score=_collapsed)
    assert len(rep.degenerate) == 4  # two cells, judged under each policy
    found = english_dev(rep.degenerate).set_index(["intermediate", "seed"])
    assert set(found.index) == {("mb_para", 0), ("mb_qa", 1)}
    assert found.loc[("mb_para", 0), "detail"].startswith("constant predictor: 37 in all 3 languages")
    assert "at chance" in found.loc[("mb_qa", 1), "detail"]
    # left out, not averaged in: the contrast is the planted +5 and the two tasks have 2 seeds each
    row = english_dev(rep.contrast_by_target).iloc[0]
    assert row["diff"] == pytest.approx(5.0) and row["n_semantic"] == 2 and row["n_seeds"] == 2
    assert not rep.gains.set_index(["intermediate", "seed"]).index.isin(list(found.index)).any()
    tasks = english_dev(rep.tasks).set_index("intermediate")
    assert tasks.loc["mb_para", "degenerate_seeds"] == 1 and tasks.loc["mb_para", "n_seeds"] == 2
    line = declared(rep)
    assert "syntactic higher: mb_xnli" in line  # two tasks of each kind are left: a direction may be claimed
    assert "mb_xnli: 2 degenerate cell(s) left out: mb_para seed 0 (constant predictor), mb_qa seed 1 (at chance)" \
        in line
    assert any(n.startswith("4 degenerate cell(s) left out") for n in rep.notes)
    write_report(rep, tmp_path)
    assert len(pd.read_csv(tmp_path / "degenerate.csv")) == 4
    tasks = pd.read_csv(tmp_path / "tasks.csv")
    assert set(tasks["train_size"]) == {2000} and {"format", "kind", "mean_gain", "n_seeds"} <= set(tasks.columns)


def test_a_stage1_checkpoint_at_chance_leaves_too_few_tasks(store):
    rep = _report(store, "stage1", stage1_dev={"mb_deprel": 0.4, "mb_chunk": 71.0})
    found = english_dev(rep.degenerate)
    assert set(found["intermediate"]) == {"mb_deprel"} and len(found) == 3  # every seed
    assert found["detail"].str.contains("stage-1 checkpoint at chance: mb_deprel English dev f1 0.40").all()
    line = declared(rep)
    assert "no direction: mb_xnli (1 syntactic and 2 semantic task(s) left after degenerate cells" in line
    assert "higher" not in line


def test_a_baseline_that_did_not_learn_refuses_a_direction(store):
    def unlearned(task, seed, language):
        if task == "none" and seed == 2:
            return 33.0 if language == "en" else BASELINE + LANGUAGE_OFFSET[language] - 3.0
        return None

    rep = _report(store, "baseline", score=unlearned)
    base = english_dev(rep.degenerate[rep.degenerate["baseline"]])
    assert list(base["seed"]) == [2] and base["detail"].iloc[0].startswith("baseline did not learn: English 33.00")
    assert 2 not in set(rep.gains["seed"])  # the gains over it are left out
    line = declared(rep)
    assert "no direction: mb_xnli (the 'none' baseline is degenerate (seed 2))" in line
    assert "higher" not in line
    assert any("baseline of mb_xnli is degenerate" in n for n in rep.notes)
