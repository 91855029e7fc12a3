"""What the answer is about: zero-shot languages by default, and a family of by-target tests whose p-values are
adjusted together before a direction is claimed."""

from __future__ import annotations

import numpy as np
import pytest

from xgrid.statistics import contrast as stats
from xgrid.compare.report import build_report, select_languages, write_report
from xgrid.compare.runs import CompareError
from tests.compare.synthetic import table

# Welch with 2 + 2 tasks (df = 2): t1 p ~ 0.003, t2 p ~ 0.030 (its interval excludes 0), t3 p = 1.
# Holm over the three: t2 -> 0.060 (no direction); BH: t2 -> 0.045 (a direction).
FAMILY = {"t1": {"syn1": 5.0, "syn2": 5.4, "sem1": 0.0, "sem2": 0.4},
          "t2": {"syn1": 1.6, "syn2": 2.0, "sem1": 0.0, "sem2": 0.4},
          "t3": {"syn1": 0.0, "syn2": 0.4, "sem1": 0.0, "sem2": 0.4}}


def test_gains_are_zero_shot_by_default():
    # English shows a huge semantic advantage that the zero-shot languages do not: it must not leak in.
    runs = table({"t1": {"syn1": 1.0, "syn2": 1.4, "sem1": 1.0, "sem2": 1.4}},
                 english_gain={"sem1": 40.0, "sem2": 40.4})
    rep = build_report(runs)
    assert set(rep.gains["language"]) == {"xa", "xb"}
    assert rep.contrast_by_target.loc[0, "diff"] == pytest.approx(0.0)
    assert rep.languages == {"t1": ["xa", "xb"]}
    assert rep.languages_label == "zero-shot (every evaluated language but en): xa, xb"
    assert "en" not in set(rep.contrast_by_language["language"]) and list(rep.matrices["t1"].index) == ["xa", "xb"]

    every = build_report(runs, languages="all")
    assert set(every.gains["language"]) == {"en", "xa", "xb"}
    # semantic: (40.2 + 1.2 + 1.2) / 3 languages = 14.2 against a syntactic 1.2
    assert every.contrast_by_target.loc[0, "diff"] == pytest.approx(-13.0)
    one = build_report(runs, languages="en")
    assert one.contrast_by_target.loc[0, "diff"] == pytest.approx(-39.0)
    assert build_report(runs, languages="xb, xa").languages == {"t1": ["xb", "xa"]}


def test_language_choice_reaches_every_file(tmp_path):
    runs = table({"t1": {"syn1": 1.0, "syn2": 1.4, "sem1": 0.0, "sem2": 0.4}})
    rep = build_report(runs)
    write_report(rep, tmp_path)
    import json

    import pandas as pd

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["languages"]["mode"] == "zero-shot" and summary["languages"]["by_target"] == {"t1": ["xa", "xb"]}
    for name in ("gains.csv", "contrast_by_language.csv"):
        assert set(pd.read_csv(tmp_path / name)["language"]) == {"xa", "xb"}, name
    tasks = pd.read_csv(tmp_path / "tasks.csv", keep_default_na=False)
    assert tasks["n_seeds"].tolist() == [1, 1, 1, 1]
    assert set(tasks["format"]) == {"?"} and set(tasks["train_size"]) == {"?"}  # tasks the registry does not know


def test_unknown_language_names_it_and_the_languages_present():
    runs = table(FAMILY)
    with pytest.raises(CompareError) as info:
        select_languages(runs, "xa,zz")
    message = str(info.value)
    assert "'zz'" in message and "en, xa, xb" in message and "\n" not in message
    with pytest.raises(CompareError, match="zero-shot, all or a comma list"):
        build_report(runs, languages=" , ")


def test_holm_over_the_targets_decides_the_direction():
    rep = build_report(table(FAMILY))
    t = rep.contrast_by_target.set_index("target")
    assert t.loc["t2", "p_value"] < 0.05 and t.loc["t2", "low"] > 0  # unadjusted, it would read as a direction
    np.testing.assert_allclose(t["p_adjusted"], stats.adjust_pvalues(t["p_value"].to_numpy(), "holm"))
    assert t.loc["t2", "p_adjusted"] > 0.05 and t.loc["t1", "p_adjusted"] < 0.05
    (line,) = rep.headline
    claimed, unclear = line.split("no clear difference: ")
    assert "syntactic higher: t1 " in claimed and "t2" not in claimed
    assert unclear.startswith("t2 +1.60") and "t3 " in unclear
    assert "Holm-adjusted over 3 targets" in line

    bh = build_report(table(FAMILY), adjust="bh")
    (line,) = bh.headline
    assert bh.contrast_by_target.set_index("target").loc["t2", "p_adjusted"] < 0.05
    assert "syntactic higher: t1" in line and "t2 +1.60" in line.split("no clear difference")[0]
    assert "BH-adjusted over 3 targets" in line


def test_the_family_is_one_policy_and_base_model():
    import pandas as pd

    runs = pd.concat([table(FAMILY, policy="english_dev"), table({"t1": FAMILY["t1"]}, policy="target_dev")],
                     ignore_index=True)
    rep = build_report(runs)
    t = rep.contrast_by_target
    oracle = t[t["policy"] == "target_dev"].iloc[0]
    assert oracle["family_size"] == 1 and oracle["p_adjusted"] == pytest.approx(oracle["p_value"])
    assert set(t.loc[t["policy"] == "english_dev", "family_size"]) == {3}
    assert any(l.startswith("policy=target_dev") and "over 1 target" in l for l in rep.headline)


def test_bad_adjustment_is_one_line():
    with pytest.raises(CompareError, match="--adjust 'bonferroni': use one of holm, bh"):
        build_report(table(FAMILY), adjust="bonferroni")


def test_runs_that_contradict_themselves_are_an_error_not_a_traceback():
    runs = table(FAMILY)
    runs.loc[(runs["target"] == "t2") & (runs["intermediate"] == "syn1"), "kind"] = "semantic"
    with pytest.raises(CompareError, match=r"intermediate task\(s\) \['syn1'\] labelled both"):
        build_report(runs)
