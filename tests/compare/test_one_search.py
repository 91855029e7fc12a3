"""Each selection policy takes its own best trial per cell, and compare reads one search at a time (the latest by
default): both against a real MLflow store."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xgrid.cli import app, common
from xgrid.compare.report import build_report
from xgrid.compare.runs import CompareError, load_runs
from tests.assertions import one_line_error
from tests.compare.stores import new_experiment, write_search

FIRST = {"mb_chunk": 5.0, "mb_deprel": 5.4, "mb_para": 0.0, "mb_qa": 0.4}  # +5
SECOND = {"mb_chunk": 0.0, "mb_deprel": 0.4, "mb_para": 3.0, "mb_qa": 3.4}  # -3: other settings, other cells


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(common.console, "width", 220)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("searches")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    two = new_experiment(uri, "two", root)
    write_search(uri, two, "first", FIRST)
    write_search(uri, two, "second", SECOND)
    write_search(uri, new_experiment(uri, "alone", root), "first", FIRST)
    split = new_experiment(uri, "split", root)  # the same grid, its seeds run by two searches
    write_search(uri, split, "a", FIRST, seeds=(0, 1, 2))
    write_search(uri, split, "b", FIRST, seeds=(3, 4))
    return uri, root


def _diffs(rep):
    return rep.contrast_by_target.set_index("policy")["diff"].round(6).to_dict()


def test_the_latest_search_by_default_and_the_first_unchanged(store):
    uri, _ = store
    latest = load_runs("two", uri)
    assert latest.attrs["searches"] == ["second"] and latest.attrs["search_ids"] == ["first", "second"]
    assert set(latest["search_id"]) == {"second"} and latest.attrs["counts"]["cells"] == 15
    assert _diffs(build_report(latest)) == {"english_dev": -3.0, "target_dev": -3.0}

    first = build_report(load_runs("two", uri, search="first"))
    alone = build_report(load_runs("alone", uri))
    assert _diffs(first) == _diffs(alone) == {"english_dev": 5.0, "target_dev": 5.0}
    assert first.contrast_by_target.drop(columns=[]).equals(alone.contrast_by_target)
    assert any("read search first of the 2 in this experiment" in n for n in first.notes)


def test_pooled_searches_say_so(store):
    uri, _ = store
    for search in ("all", "a,b"):
        runs = load_runs("split", uri, search=search)
        assert runs.attrs["searches"] == ["a", "b"] and runs.attrs["counts"]["cells"] == 25
        rep = build_report(runs)
        assert any(n.startswith("2 searches pooled: a, b") for n in rep.notes)
        assert set(rep.contrast_by_target["n_seeds"]) == {5}
    assert set(load_runs("split", uri)["seed"]) == {3, 4}  # alone, the latest


def test_searches_with_other_settings_for_the_same_cells_are_not_pooled(store):
    uri, _ = store
    with pytest.raises(CompareError, match="searches first, second both have .* under other settings"):
        load_runs("two", uri, search="all")
    one_line_error(CliRunner().invoke(app, ["compare", "two", "--tracking-uri", uri, "--search", "all", "--no-log"]),
                   "would count twice", "--search ID")


def test_an_unknown_search_lists_the_ids(store):
    uri, _ = store
    with pytest.raises(CompareError, match=r"no search 'third' in experiment 'two'; searches present \(oldest "
                                           r"first\): first, second"):
        load_runs("two", uri, search="third")
    one_line_error(CliRunner().invoke(app, ["compare", "two", "--tracking-uri", uri, "--search", "first,third",
                                            "--no-log"]), "no search 'third'", "first, second")


def test_the_cli_header_names_the_search_and_languages(store, tmp_path):
    uri, _ = store
    result = CliRunner().invoke(app, ["compare", "split", "--tracking-uri", uri, "--search", "all", "--no-log",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "searches a, b pooled (2 of 2 in the experiment)" in result.stdout
    assert "languages zero-shot (every evaluated language but en): xa, xb" in result.stdout
    default = CliRunner().invoke(app, ["compare", "two", "--tracking-uri", uri, "--no-log", "--out", str(tmp_path)])
    assert "search second (the latest of 2 in the experiment)" in default.stdout
    first = CliRunner().invoke(app, ["compare", "two", "--tracking-uri", uri, "--no-log", "--out", str(tmp_path),
                                     "--search", "first"])
    assert "search first (of 2 in the experiment; the latest is second)" in first.stdout


def test_each_policy_selects_its_own_trial(store):
    """Two trials per cell: English dev prefers the first, target dev the second. Each policy's rows must come
    from its own pick; the other trial of each carries scores that would reverse the contrast."""
    uri, root = store

    def disagreeing(task, seed, scores):
        wrong = {k: v + (-20.0 if task.startswith("mb_c") or task == "mb_deprel" else 20.0) for k, v in scores.items()}
        oracle = {k: v + 1.0 for k, v in scores.items()}
        return [(1e-5, 80.0, 60.0, scores, wrong), (3e-5, 60.0, 90.0, wrong, oracle)]

    write_search(uri, new_experiment(uri, "policies", root), "s", FIRST, trials=disagreeing)
    runs = load_runs("policies", uri)
    counts = runs.attrs["counts"]
    assert counts["policies_disagree"] == counts["cells"] == 15 and counts["not_selected"] == 0
    picked = runs.groupby("policy")["learning_rate"].unique().map(list).to_dict()
    assert picked == {"english_dev": [1e-5], "target_dev": [3e-5]}
    by_cell = runs.groupby(["cell_id", "policy"])["run_id"].first().unstack("policy")
    assert (by_cell["english_dev"] != by_cell["target_dev"]).all()
    assert _diffs(build_report(runs)) == {"english_dev": 5.0, "target_dev": 5.0}


def test_runs_without_a_search_id_are_one_search(store):
    """A store written before runs carried search_id: everything in it is read, and nothing claims a search."""
    uri, root = store
    write_search(uri, new_experiment(uri, "untagged", root), None, FIRST)
    runs = load_runs("untagged", uri)
    assert runs.attrs["searches"] == [] and runs.attrs["search_ids"] == [] and runs.attrs["counts"]["cells"] == 15
    rep = build_report(runs)
    assert _diffs(rep) == {"english_dev": 5.0, "target_dev": 5.0}
    assert not any("search" in n for n in rep.notes)
    with pytest.raises(CompareError, match="no search 'x'"):
        load_runs("untagged", uri, search="x")
