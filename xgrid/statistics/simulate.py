"""Synthetic grids in the shape `xgrid.compare.runs.load_runs` returns, with a known truth.

Used to check that the intervals `xgrid compare` prints hold their coverage (tests/statistics/test_coverage.py,
benchmarks/compare_coverage.py) and that the dry run's power lines (`xgrid.planning.power`) predict the width a
search will get. Each simulated search is one target (``sim0``, ``sim1``, ...), so a single
`stats.contrast_table(gains, by=["target"])` call analyses thousands of them along the path compare takes.

The model, per simulated search, in points of the target's metric:

    score(none, seed, lang)      = 60 + lang effect + baseline seed effect          + residual
    score(task, seed, lang)      = 60 + lang effect + kind effect + task effect + seed effect + residual
    task effect  ~ N(0, task_sd)    (a task's true mean gain around its kind's)
    seed effect  ~ N(0, seed_sd)    (one fine-tuning seed around its task's mean)
    residual     ~ N(0, resid_sd)   (per language: evaluation noise)

``effect`` is the true syntactic - semantic difference (half added to syntactic, half taken from semantic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Design", "simulate_runs", "coverage"]

LANGUAGES = ("en", "xa", "xb", "xc")


@dataclass(frozen=True)
class Design:
    n_syntactic: int
    n_semantic: int
    n_seeds: int = 3
    task_sd: float = 2.0
    seed_sd: float = 1.0
    effect: float = 0.0
    resid_sd: float = 0.5
    baseline_sd: float = 1.0

    def label(self) -> str:
        return (f"{self.n_syntactic}+{self.n_semantic} tasks x {self.n_seeds} seeds, task sd {self.task_sd:g}, "
                f"seed sd {self.seed_sd:g}, effect {self.effect:+g}")


def simulate_runs(design: Design, n_searches: int, rng: np.random.Generator,
                  languages: tuple[str, ...] = LANGUAGES) -> pd.DataFrame:
    """`n_searches` independent searches of the design, as result rows (one per run and language)."""
    d = design
    tasks = [(f"syn{i}", "syntactic", d.effect / 2) for i in range(d.n_syntactic)]
    tasks += [(f"sem{i}", "semantic", -d.effect / 2) for i in range(d.n_semantic)]
    n_tasks, n_lang, n_seed = len(tasks), len(languages), d.n_seeds
    shape = (n_searches, 1 + n_tasks, n_seed, n_lang)
    lang_effect = rng.normal(0.0, 5.0, (n_searches, 1, 1, n_lang))
    kind_effect = np.array([0.0] + [t[2] for t in tasks])[None, :, None, None]
    task_effect = np.concatenate([np.zeros((n_searches, 1)), rng.normal(0.0, d.task_sd, (n_searches, n_tasks))],
                                 axis=1)[:, :, None, None]
    seed_sd = np.array([d.baseline_sd] + [d.seed_sd] * n_tasks)[None, :, None, None]
    seed_effect = rng.normal(0.0, 1.0, (n_searches, 1 + n_tasks, n_seed, 1)) * seed_sd
    score = 60.0 + lang_effect + kind_effect + task_effect + seed_effect + rng.normal(0.0, d.resid_sd, shape)

    names = np.array(["none"] + [t[0] for t in tasks])
    kinds = np.array(["none"] + [t[1] for t in tasks])
    s, c, k, l = (a.ravel() for a in np.meshgrid(np.arange(n_searches), np.arange(1 + n_tasks), np.arange(n_seed),
                                                 np.arange(n_lang), indexing="ij"))
    return pd.DataFrame({
        "base_model": "sim-model", "target": np.char.add("sim", s.astype(str)), "target_group": "classification",
        "policy": "english_dev", "intermediate": names[c], "kind": kinds[c], "seed": k,
        "language": np.array(languages)[l], "score": score.ravel(),
    })


def coverage(design: Design, n_searches: int, seed: int = 0, confidence: float = 0.95,
             languages: tuple[str, ...] = LANGUAGES, zero_shot_only: bool = True) -> dict[str, float]:
    """Simulate and analyse as `xgrid compare` does (zero-shot languages, gains over `none`, task-level
    contrast by target). Returns coverage of the true effect, the rate at which the interval excludes 0
    (power when effect != 0, the false-positive rate under the null) and the mean half-width."""
    from xgrid.statistics import contrast as stats

    runs = simulate_runs(design, n_searches, np.random.default_rng(seed), languages)
    if zero_shot_only:
        runs = runs[runs["language"] != "en"]
    table = stats.contrast_table(stats.compute_gains(runs), by=["target"], confidence=confidence)
    covered = (table["low"] <= design.effect) & (design.effect <= table["high"])
    excludes_zero = (table["low"] > 0) | (table["high"] < 0)
    return {"coverage": float(covered.mean()), "excludes_zero": float(excludes_zero.mean()),
            "half_width": float(((table["high"] - table["low"]) / 2).mean()), "searches": len(table)}
