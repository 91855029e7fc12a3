"""The report recovers the planted contrast over the zero-shot languages, adjusts the answer's p-values over the
targets, leaves own-data cells out, writes its files and logs them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from xgrid.statistics import contrast as stats
from xgrid.compare.report import ALL_GROUPS, build_report, log_report, write_report
from xgrid.compare.runs import CompareError
from tests.compare.test_runs import (EXPERIMENT, OWN, PLANTED, SEEDS, TARGETS, _client, grid_runs,  # noqa: F401
                                     grid_store)


def zero_shot(languages) -> list[str]:
    return [l for l in languages if l != "en"]


@pytest.fixture(scope="module")
def report(grid_runs):  # noqa: F811
    return build_report(grid_runs)


def test_contrast_recovers_the_planted_effect(report):
    table = report.contrast_by_target
    assert set(table["policy"]) == {"english_dev", "target_dev"}
    for row in table.to_dict("records"):
        planted = PLANTED[row["target"]]
        assert row["low"] <= planted <= row["high"], row
        assert abs(row["diff"] - planted) < 1.0, row
        if planted > 0:
            assert row["low"] > 0, row
        elif planted < 0:
            assert row["high"] < 0, row
        assert row["n_syntactic"] == 2 and row["n_semantic"] == 2  # the own-data task is not a third one
        assert row["n_seeds"] == (2 if row["target"] == "mb_xnli" else 3)  # one xnli cell is still running
    assert set(table["metric"]) == {"f1", "accuracy"}
    # tatoeba is retrieval: only the declared policy
    assert set(table.loc[table["target"] == "mb_tatoeba", "policy"]) == {"english_dev"}


def test_group_and_language_tables(report):
    groups = report.contrast_by_group
    assert set(groups["target_group"]) == {"tagging", "classification", "retrieval", ALL_GROUPS}
    declared = groups[groups["policy"] == "english_dev"].set_index("target_group")
    assert declared.loc["tagging", "diff"] > 3 and declared.loc["classification", "diff"] < -3
    # pooled over targets the effects cancel: (5 - 5 + 0) / 3
    assert abs(declared.loc[ALL_GROUPS, "diff"]) < 1.0
    assert declared.loc[ALL_GROUPS, "targets"] == "mb_tatoeba,mb_udpos,mb_xnli"
    langs = report.contrast_by_language
    expected = sum(len(zero_shot(l)) * (1 if f == "retrieval" else 2) for f, _, l, _, _ in TARGETS.values())
    assert len(langs) == expected and "en" not in set(langs["language"])
    udpos = langs[langs["target"] == "mb_udpos"]
    assert (udpos["diff"] > 3).all()


def test_own_data_cells_are_flagged_and_excluded(report):
    assert not report.gains["own_data"].any()
    assert OWN[0] not in set(report.gains.loc[report.gains["target"] == OWN[2], "intermediate"])
    flagged = report.flagged
    assert set(zip(flagged["intermediate"], flagged["target"])) == {(OWN[0], OWN[2])}
    assert len(flagged) == len(SEEDS) * 2  # per seed and policy
    assert (flagged["mean_gain"] > 30).all()  # it would have swamped the contrast
    assert any("own English training data" in note for note in report.notes)


def test_summaries_matrices_and_notes(report):
    kinds = report.kinds
    assert set(kinds["kind"]) == {"syntactic", "semantic"}
    row = kinds[(kinds["target"] == "mb_udpos") & (kinds["kind"] == "syntactic")
                & (kinds["policy"] == "english_dev")].iloc[0]
    assert row["low"] <= 5.0 <= row["high"]
    m = report.matrices["mb_udpos"]
    assert list(m.index) == ["xa", "xb"]  # zero-shot: English is the training language
    assert list(m.columns) == ["mb_chunk", "mb_deprel", "mb_para", "mb_qa"]  # syntactic first, no own-data column
    assert m.notna().all().all()
    assert report.matrix_policy == {t: "english_dev" for t in TARGETS}
    assert report.counts["running"] == 3 and report.counts["pending_cells"] == 1
    assert any("still running" in note for note in report.notes)
    assert any(stats.METHOD_NOTE in note for note in report.notes)
    assert any("per-language rows are descriptive" in note for note in report.notes)


def test_write_and_log(report, grid_store, tmp_path):  # noqa: F811
    files = write_report(report, tmp_path / "out")
    names = {p.name for p in files}
    for name in ("gains.csv", "contrast_by_target.csv", "contrast_by_group.csv", "contrast_by_language.csv",
                 "flagged_cells.csv", "gain_by_target.png", "summary.json",
                 *(f"heatmap_{t}.png" for t in TARGETS)):
        assert name in names
    for path in files:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.stat().st_size > 1024
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = pd.read_csv(tmp_path / "out" / "contrast_by_target.csv")
    assert len(back) == len(report.contrast_by_target)

    run_id = log_report(files, EXPERIMENT, grid_store.uri, report.parent_run_id)
    assert run_id == grid_store.parent_id
    logged = {f.path for f in _client(grid_store.uri).list_artifacts(run_id, "compare")}
    assert logged == {f"compare/{p.name}" for p in files}
    # without an explicit parent: the experiment's search run is found
    assert log_report(files[:1], EXPERIMENT, grid_store.uri) == grid_store.parent_id


def test_no_baseline_is_an_error(grid_runs):  # noqa: F811
    no_base = grid_runs[grid_runs["kind"] != "none"].copy()
    with pytest.raises(CompareError, match="no baseline"):
        build_report(no_base)


def test_headline_states_the_divergence(report):
    declared = [line for line in report.headline if line.startswith("policy=english_dev")]
    assert len(declared) == 1 and len(report.headline) == 2
    line = declared[0]
    assert "syntactic higher: mb_udpos" in line
    assert "semantic higher: mb_xnli" in line
    assert "no clear difference: mb_tatoeba" in line and "opposite directions" in line
    assert "Holm-adjusted over 3 targets" in line  # udpos, xnli, tatoeba under English-dev selection
    oracle = next(line for line in report.headline if line.startswith("policy=target_dev"))
    assert "Holm-adjusted over 2 targets" in oracle  # tatoeba (retrieval) has no target-dev selection


def test_by_target_p_values_are_holm_adjusted_per_policy(report):
    table = report.contrast_by_target
    for policy, sub in table.groupby("policy"):
        expected = stats.adjust_pvalues(sub["p_value"].to_numpy(), method="holm")
        np.testing.assert_allclose(sub["p_adjusted"].to_numpy(), expected)
        assert (sub["family_size"] == len(sub)).all()
        assert (sub["p_adjusted"] >= sub["p_value"]).all()
    assert list(table.columns).index("p_adjusted") == list(table.columns).index("p_value") + 1


def test_several_base_models_are_never_pooled(tmp_path):
    import numpy as np

    from tests.statistics.test_contrast import make_runs

    rng = np.random.default_rng(3)
    frames = []
    for model, effect in (("xlmr-large", 0.0), ("xlmr-xl", 4.0)):
        df = make_runs(rng, targets=("udpos",), effects={("udpos", "syntactic"): effect})
        frames.append(df.assign(base_model=model))
    rep = build_report(pd.concat(frames, ignore_index=True))
    table = rep.contrast_by_target.set_index("base_model")
    assert list(table.index) == ["xlmr-large", "xlmr-xl"]
    assert table.loc["xlmr-xl", "low"] > 0 and table.loc["xlmr-large", "low"] < 4.0
    assert "base_model" in rep.contrast_by_group.columns and "base_model" in rep.kinds.columns
    assert all(line.startswith("base_model=") for line in rep.headline)
    assert (rep.contrast_by_target["family_size"] == 1).all()  # one family per base model: never adjusted across
    assert all("Holm-adjusted over 1 target:" in line for line in rep.headline)
    assert (tmp_path / "gain_by_target.png") in write_report(rep, tmp_path)
