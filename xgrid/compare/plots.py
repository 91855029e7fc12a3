"""Figures of `xgrid compare` (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["gain_by_target", "heatmap"]

KIND_ORDER = ("syntactic", "semantic", "ner", "other", "multi")
KIND_COLORS = {"syntactic": "#1b9e77", "semantic": "#7570b3", "ner": "#d95f02", "other": "#999999",
               "multi": "#e7298a"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _facets(summary: pd.DataFrame) -> list[str]:
    fixed = {"target", "kind", "mean", "low", "high", "n_tasks", "n_seeds"}
    return [c for c in summary.columns if c not in fixed]


def gain_by_target(summary: pd.DataFrame, path: str | Path, metrics: dict[str, str] | None = None,
                   languages: str = "") -> Path:
    """Grouped bars: mean gain over the baseline of every kind, per target, with its 95% t-interval over tasks.

    ``summary`` is `stats.kind_summary(gains, by=["target", ...])`; one panel per value of the other keys
    (policy, base model). ``languages`` names the languages averaged (the title says it)."""
    plt = _pyplot()
    path = Path(path)
    facet_keys = _facets(summary)
    panels = [((), summary)] if not facet_keys else [
        (key if isinstance(key, tuple) else (key,), sub)
        for key, sub in summary.groupby(facet_keys, sort=True)]
    targets = sorted(summary["target"].unique())
    kinds = sorted(summary["kind"].unique(), key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else 99, k))
    width = 0.8 / max(len(kinds), 1)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.5, 1.5 + 0.8 * len(targets) * max(len(kinds), 2)),
                                                       3.4 * len(panels)), squeeze=False, sharey=True)
    x = np.arange(len(targets))
    for ax, (key, sub) in zip(axes[:, 0], panels):
        for i, kind in enumerate(kinds):
            rows = sub[sub["kind"] == kind].set_index("target").reindex(targets)
            mean = rows["mean"].to_numpy(dtype=float)
            err = np.vstack([mean - rows["low"].to_numpy(dtype=float), rows["high"].to_numpy(dtype=float) - mean])
            ax.bar(x + (i - (len(kinds) - 1) / 2) * width, mean, width, yerr=np.nan_to_num(err), capsize=3,
                   label=kind, color=KIND_COLORS.get(kind, "#666666"), edgecolor="black", linewidth=0.4)
        for j, target in enumerate(targets):
            if target not in set(sub["target"]):
                ax.text(j, 0.0, "no result", ha="center", va="bottom", fontsize=7, color="#666666")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlim(-0.5, len(targets) - 0.5)
        labels = [f"{t}\n({metrics[t]})" if metrics and t in metrics else t for t in targets]
        ax.set_xticks(x, labels)
        ax.set_ylabel("gain over 'none'")
        title = "mean gain by intermediate-task kind, 95% t-interval over tasks (seeds averaged in each)"
        if languages:
            title += f"; {languages} languages"
        if key:
            title += "\n" + ", ".join(f"{k}: {v}" for k, v in zip(facet_keys, key))
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def heatmap(matrix: pd.DataFrame, path: str | Path, task_kinds: dict[str, str] | None = None,
            title: str = "") -> Path:
    """Language (rows) x intermediate task (columns) mean gain, diverging colours centred at 0, annotated."""
    plt = _pyplot()
    path = Path(path)
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    bound = bound if bound > 0 else 1.0
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.9 * n_cols), max(3.0, 1.4 + 0.42 * n_rows)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_facecolor("#dddddd")  # missing cells
    kinds = task_kinds or {}
    ax.set_xticks(range(n_cols), [f"{c}\n({kinds[c]})" if c in kinds else str(c) for c in matrix.columns],
                  rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows), [str(i) for i in matrix.index], fontsize=8)
    ax.set_xlabel("intermediate task")
    ax.set_ylabel("language")
    for r in range(n_rows):
        for c in range(n_cols):
            v = values[r, c]
            text = "-" if not math.isfinite(v) else f"{v:+.1f}"
            dark = math.isfinite(v) and abs(v) > 0.6 * bound
            ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label="gain over 'none'")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
