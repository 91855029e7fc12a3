import numpy as np
import pandas as pd
import pytest

from scipy import stats as scipy_stats

from xgrid.statistics.contrast import (
    REQUIRED_COLUMNS,
    ContrastResult,
    adjust_pvalues,
    compute_gains,
    contrast,
    contrast_table,
    kind_summary,
    task_means,
)

COLUMNS = list(REQUIRED_COLUMNS)


def make_runs(
    rng,
    n_syn=3,
    n_sem=3,
    n_seeds=5,
    n_langs=4,
    targets=("xnli",),
    effects=None,
    policies=("default",),
    extra_kinds=(),
    task_sd=1.0,
    seed_sd=1.0,
    base_sd=1.0,
    resid_sd=0.5,
):
    """Synthetic results table: one `none` baseline plus syntactic and semantic tasks.

    score = 70 + language effect + [kind effect + task effect + seed effect] + residual,
    where the bracket applies to intermediate runs only and the baseline gets its own seed
    effect. `effects` maps (target, kind) to the true mean gain of that kind.
    """
    effects = effects or {}
    langs = [f"l{i}" for i in range(n_langs)]
    tasks = (
        [(f"syn{i}", "syntactic") for i in range(n_syn)]
        + [(f"sem{i}", "semantic") for i in range(n_sem)]
        + [(f"{k}{i}", k) for k in extra_kinds for i in range(2)]
    )
    cols = {c: [] for c in COLUMNS}
    seed_grid, lang_grid = np.meshgrid(np.arange(n_seeds), np.arange(n_langs), indexing="ij")
    seed_grid, lang_grid = seed_grid.ravel(), lang_grid.ravel()
    n = len(seed_grid)
    for policy in policies:
        for target in targets:
            group = "tagging" if target in ("udpos", "panx") else "classification"
            lang_eff = rng.normal(0.0, 5.0, n_langs)
            cells = [("none", "none", rng.normal(0.0, base_sd, n_seeds), 0.0)]
            for name, kind in tasks:
                true = effects.get((target, kind), 0.0) + rng.normal(0.0, task_sd)
                cells.append((name, kind, rng.normal(0.0, seed_sd, n_seeds), true))
            for name, kind, seed_eff, true in cells:
                score = (
                    70.0
                    + lang_eff[lang_grid]
                    + true
                    + seed_eff[seed_grid]
                    + rng.normal(0.0, resid_sd, n)
                )
                for col, value in (
                    ("base_model", "xlmr-xl"),
                    ("target", target),
                    ("target_group", group),
                    ("policy", policy),
                    ("intermediate", name),
                    ("kind", kind),
                ):
                    cols[col].append(np.repeat(value, n))
                cols["seed"].append(seed_grid)
                cols["language"].append(np.array(langs)[lang_grid])
                cols["score"].append(score)
    return pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})


def make_gains(rng, **kw):
    return compute_gains(make_runs(rng, **kw))


def naive_row_bootstrap(gains, n_boot, rng, confidence=0.95):
    """The wrong method: treat every (task, seed, language) row as independent."""
    a = gains.loc[gains["kind"] == "syntactic", "gain"].to_numpy()
    b = gains.loc[gains["kind"] == "semantic", "gain"].to_numpy()
    dist = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[
        rng.integers(0, len(b), (n_boot, len(b)))
    ].mean(1)
    alpha = 1 - confidence
    return np.quantile(dist, [alpha / 2, 1 - alpha / 2])


# --------------------------------------------------------------------------- gains


def _row(intermediate, kind, seed, language, score, target="xnli", policy="p"):
    return dict(
        base_model="m",
        target=target,
        target_group="classification",
        policy=policy,
        intermediate=intermediate,
        kind=kind,
        seed=seed,
        language=language,
        score=score,
        lr=1e-5,  # extra column: must be carried along, not used
    )


def tiny_runs():
    return pd.DataFrame(
        [
            _row("none", "none", 0, "de", 60.0),
            _row("none", "none", 0, "fr", 70.0),
            _row("none", "none", 1, "de", 62.0),
            _row("mnli", "semantic", 0, "de", 65.0),
            _row("mnli", "semantic", 0, "fr", 69.0),
            _row("mnli", "semantic", 1, "de", 61.5),
            _row("udpos", "syntactic", 0, "de", 60.25),
            # no baseline for seed 1 / fr, none for seed 2, none for target pawsx
            _row("mnli", "semantic", 1, "fr", 71.0),
            _row("udpos", "syntactic", 2, "de", 50.0),
            _row("udpos", "syntactic", 0, "de", 55.0, target="pawsx"),
        ]
    )


def test_compute_gains_exact_values_and_unmatched():
    g = compute_gains(tiny_runs())
    assert g.attrs["unmatched"] == 3
    assert (g["kind"] != "none").all()
    got = {
        (r.intermediate, r.seed, r.language): r.gain
        for r in g.itertuples(index=False)
    }
    assert got == {
        ("mnli", 0, "de"): 5.0,
        ("mnli", 0, "fr"): -1.0,
        ("mnli", 1, "de"): -0.5,
        ("udpos", 0, "de"): 0.25,
    }
    assert "lr" in g.columns
    assert g["baseline_score"].tolist() == [60.0, 70.0, 62.0, 60.0]


def test_compute_gains_matches_on_policy_and_counts_missing_scores():
    runs = tiny_runs()
    runs.loc[runs["intermediate"] == "udpos", "policy"] = "q"  # no `none` row for policy q
    runs.loc[(runs["intermediate"] == "mnli") & (runs["seed"] == 1) & (runs["language"] == "de"), "score"] = np.nan
    g = compute_gains(runs)
    assert g.attrs["unmatched"] == 4  # 3 udpos rows + mnli seed 1 fr
    assert g.attrs["missing_score"] == 1
    assert sorted(g["gain"]) == [-1.0, 5.0]


def test_compute_gains_duplicates_raise_with_keys():
    runs = tiny_runs()
    dup = runs.iloc[[3]].assign(score=66.0, lr=3e-5)
    with pytest.raises(ValueError, match=r"intermediate='mnli'.*seed=0.*language='de'"):
        compute_gains(pd.concat([runs, dup], ignore_index=True))


def test_compute_gains_requires_columns():
    with pytest.raises(KeyError, match="policy"):
        compute_gains(tiny_runs().drop(columns=["policy"]))


# --------------------------------------------------------------------------- t-intervals


def _hand_table():
    """Gains with unequal seeds and languages, to check the nested means by hand."""
    rows = []

    def add(task, kind, seed, gains):
        for lang, gain in zip("abc", gains):
            rows.append(dict(intermediate=task, kind=kind, seed=seed, language=lang, gain=gain,
                             base_model="m", target="t", policy="p"))

    add("s1", "syntactic", 0, [1.0, 3.0])  # seed mean 2
    add("s1", "syntactic", 1, [4.0])  # 4   -> task mean 3
    add("s2", "syntactic", 0, [0.0, 0.0, 3.0])  # 1 -> task mean 1
    add("m1", "semantic", 0, [1.0])
    add("m1", "semantic", 1, [2.0])
    add("m1", "semantic", 2, [3.0])  # task mean 2
    add("m2", "semantic", 1, [-2.0, 0.0])  # task mean -1
    return pd.DataFrame(rows)


def test_contrast_is_welch_on_nested_task_means():
    g = _hand_table()
    res = contrast(g)
    assert isinstance(res, ContrastResult)
    assert res.mean_a == pytest.approx(2.0)  # (3 + 1) / 2
    assert res.mean_b == pytest.approx(0.5)  # (2 - 1) / 2
    assert res.estimate == pytest.approx(1.5)
    assert (res.n_tasks_a, res.n_tasks_b, res.n_seeds) == (2, 2, 1)
    # By hand: var([3, 1]) / 2 = 1, var([2, -1]) / 2 = 2.25; se = sqrt(3.25); Satterthwaite df = 3.25^2 / (1 + 2.25^2).
    assert res.se == pytest.approx(np.sqrt(3.25))
    assert res.df == pytest.approx(3.25**2 / (1 + 2.25**2))
    welch = scipy_stats.ttest_ind([3.0, 1.0], [2.0, -1.0], equal_var=False)
    assert res.p_value == pytest.approx(welch.pvalue)
    low, high = welch.confidence_interval(0.95)
    assert (res.low, res.high) == pytest.approx((low, high))

    single = contrast(g, "semantic", None)
    assert single.estimate == pytest.approx(0.5)
    assert np.isnan(single.mean_b) and single.n_tasks_b == 0
    one_sample = scipy_stats.ttest_1samp([2.0, -1.0], 0.0)
    assert (single.low, single.high) == pytest.approx(tuple(one_sample.confidence_interval(0.95)))


def test_contrast_matches_scipy_on_task_means_of_a_grid():
    g = make_gains(np.random.default_rng(3), n_syn=4, n_sem=6, n_seeds=3)
    res = contrast(g)
    a, b = task_means(g, "syntactic"), task_means(g, "semantic")
    assert len(a) == 4 and len(b) == 6
    welch = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert res.p_value == pytest.approx(welch.pvalue)
    assert (res.low, res.high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    narrow = contrast(g, confidence=0.5)
    assert res.low < narrow.low < narrow.high < res.high


def test_contrast_rejects_bad_input():
    g = _hand_table()
    with pytest.raises(ValueError, match="no ner tasks"):
        contrast(g, "syntactic", "ner")
    clash = pd.concat([g, g[g["intermediate"] == "s1"].assign(kind="semantic")])
    with pytest.raises(ValueError, match="s1"):
        contrast(clash)
    with pytest.raises(ValueError, match="confidence"):
        contrast(g, confidence=1.5)


def test_no_variation_between_tasks_gives_no_interval():
    g = _hand_table()
    g["gain"] = np.where(g["kind"] == "syntactic", 2.0, 1.0)
    res = contrast(g)
    assert res.estimate == pytest.approx(1.0)
    assert np.isnan(res.low) and np.isnan(res.p_value)
    assert "no variation" in res.note


def test_planted_gain_recovered():
    rng = np.random.default_rng(0)
    g = make_gains(
        rng,
        targets=("xnli", "udpos"),
        effects={("xnli", "syntactic"): 4.0, ("xnli", "semantic"): 1.0},
        task_sd=0.5,
        seed_sd=0.5,
        base_sd=0.3,  # baseline noise shifts both kinds' means alike
    )
    xnli = contrast(g[g["target"] == "xnli"])
    assert xnli.estimate == pytest.approx(3.0, abs=1.0)
    assert xnli.low <= 3.0 <= xnli.high
    assert xnli.low > 0.0 and xnli.p_value < 0.05
    assert xnli.mean_a == pytest.approx(4.0, abs=1.0)
    assert xnli.mean_b == pytest.approx(1.0, abs=1.0)
    udpos = contrast(g[g["target"] == "udpos"])
    assert udpos.low <= 0.0 <= udpos.high
    assert abs(udpos.estimate) < 1.5


def test_welch_p_is_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    ps = np.array([contrast(make_gains(rng, n_syn=3, n_sem=3)).p_value for _ in range(300)])
    print(f"null: P(p<0.05) = {np.mean(ps < 0.05):.3f}, P(p<0.2) = {np.mean(ps < 0.2):.3f}")
    assert np.mean(ps < 0.05) <= 0.08
    assert 0.10 <= np.mean(ps < 0.2) <= 0.30


def test_the_unit_is_the_task_not_its_seeds():
    """A single extreme task must not look significant just because it has many seeds."""
    rng = np.random.default_rng(8)
    g = make_gains(rng, n_syn=4, n_sem=4, n_seeds=10, task_sd=0.2, seed_sd=0.2)
    g.loc[g["intermediate"] == "syn0", "gain"] += 8.0
    assert contrast(g).p_value > 0.1


def test_naive_rows_are_anti_conservative_where_tasks_are_not():
    """Treating every (task, seed, language) row as independent covers 0 far less than 95% of the time."""
    rng = np.random.default_rng(2024)
    reps, task_level, naive = 200, 0, 0
    for _ in range(reps):
        g = make_gains(rng, n_syn=5, n_sem=5, n_seeds=5, n_langs=4)
        res = contrast(g)
        task_level += res.low <= 0.0 <= res.high
        low, high = naive_row_bootstrap(g, 400, rng)
        naive += low <= 0.0 <= high
    print(f"coverage of nominal 95%: task-level t {task_level / reps:.3f}, naive rows {naive / reps:.3f}")
    assert task_level / reps >= 0.9
    assert naive / reps < 0.75


# --------------------------------------------------------------------------- multiplicity


def test_holm_by_hand_and_nans_outside_the_family():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    got = adjust_pvalues(p, "holm")
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])
    assert adjust_pvalues([0.9, 0.8], "holm") == pytest.approx([1.0, 1.0])  # capped at 1
    assert adjust_pvalues([0.02], "holm") == pytest.approx([0.02])  # a family of one


def test_bh_matches_scipy_and_bad_method_is_named():
    p = np.array([0.001, 0.02, 0.03, 0.2, 0.5])
    assert adjust_pvalues(p, "bh") == pytest.approx(scipy_stats.false_discovery_control(p, method="bh"))
    assert (adjust_pvalues(p, "bh") <= adjust_pvalues(p, "holm") + 1e-12).all()
    assert np.isnan(adjust_pvalues([np.nan, np.nan])).all()
    with pytest.raises(ValueError, match="bonferroni"):
        adjust_pvalues(p, "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5])


# --------------------------------------------------------------------------- tables


def test_contrast_table_groups_and_missing_kind_note():
    rng = np.random.default_rng(9)
    g = make_gains(
        rng,
        targets=("xnli", "udpos"),
        effects={("xnli", "syntactic"): 3.0},
        task_sd=0.5,
        seed_sd=0.5,
    )
    # udpos: drop the semantic tasks entirely
    g = g[~((g["target"] == "udpos") & (g["kind"] == "semantic"))]
    t = contrast_table(g, ["target"])
    assert list(t.columns) == [
        "target", "mean_a", "mean_b", "diff", "low", "high", "se", "df", "p_value",
        "n_tasks_a", "n_tasks_b", "n_seeds", "note",
    ]
    assert t["target"].tolist() == ["udpos", "xnli"]
    ud, xn = t.iloc[0], t.iloc[1]
    assert np.isnan(ud["diff"]) and np.isnan(ud["low"]) and np.isnan(ud["p_value"])
    assert ud["note"] == "no semantic tasks"
    assert (ud["n_tasks_a"], ud["n_tasks_b"]) == (3, 0)
    assert xn["note"] == ""
    assert xn["low"] < xn["diff"] < xn["high"]
    assert xn["diff"] == pytest.approx(xn["mean_a"] - xn["mean_b"])
    assert (xn["n_tasks_a"], xn["n_tasks_b"], xn["n_seeds"]) == (3, 3, 5)
    assert xn["p_value"] == pytest.approx(contrast(g[g["target"] == "xnli"]).p_value)

    by_group = contrast_table(g, ["target_group"])
    assert by_group["target_group"].tolist() == ["classification", "tagging"]
    assert by_group.set_index("target_group").loc["tagging", "note"] == "no semantic tasks"

    by_lang = contrast_table(g, ["target", "language"])
    assert len(by_lang) == 2 * 4
    assert by_lang.loc[by_lang["target"] == "udpos", "note"].eq("no semantic tasks").all()

    ner = contrast_table(g, ["target"], kind_b="ner")
    assert ner["note"].eq("no ner tasks").all()


def test_contrast_table_keeps_policies_apart_and_flags_single_task():
    rng = np.random.default_rng(10)
    g = make_gains(rng, policies=("default", "best_lr"), targets=("xnli",))
    t = contrast_table(g, ["target"])
    assert list(t.columns[:2]) == ["target", "policy"]
    assert sorted(t["policy"]) == ["best_lr", "default"]
    alone = contrast_table(g[g["policy"] == "default"], ["target"])
    assert "policy" not in alone.columns and len(alone) == 1

    one = g[(g["policy"] == "default") & ((g["kind"] != "syntactic") | (g["intermediate"] == "syn0"))]
    row = contrast_table(one, ["target"]).iloc[0]
    assert row["n_tasks_a"] == 1
    assert "only one syntactic task" in row["note"]
    assert np.isfinite(row["diff"]) and np.isnan(row["low"]) and np.isnan(row["high"])
    assert np.isnan(row["p_value"])


def test_kind_summary():
    rng = np.random.default_rng(12)
    g = make_gains(rng, targets=("xnli", "udpos"), extra_kinds=("ner",),
                   effects={("xnli", "semantic"): 2.0})
    s = kind_summary(g, ["target"])
    assert list(s.columns) == ["target", "kind", "mean", "low", "high", "n_tasks", "n_seeds"]
    assert len(s) == 2 * 3
    with_interval = s[s["n_tasks"] >= 2]
    assert (with_interval["low"] <= with_interval["mean"]).all() and (with_interval["mean"] <= with_interval["high"]).all()
    row = s[(s["target"] == "xnli") & (s["kind"] == "semantic")].iloc[0]
    direct = contrast(g[g["target"] == "xnli"], "semantic", None)
    assert row["mean"] == pytest.approx(direct.estimate)
    assert (row["low"], row["high"]) == pytest.approx((direct.low, direct.high))
    assert (row["n_tasks"], row["n_seeds"]) == (3, 5)
    overall = kind_summary(g, [])
    assert sorted(overall["kind"]) == ["ner", "semantic", "syntactic"]
