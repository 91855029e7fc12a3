"""Hand-built results tables (one row per cell, policy and language, as `load_runs` returns) whose task means
are chosen exactly, so a test knows every p-value the report will see."""

from __future__ import annotations

import pandas as pd

BASELINE = 50.0
# Languages score differently (a model predicting one thing everywhere would not): English highest.
LANGUAGE_OFFSET = {"en": 10.0, "xa": 0.0, "xb": -5.0, "xc": -8.0}


def table(gains: dict[str, dict[str, float]], languages=("en", "xa", "xb"), seeds=(0,), english_gain=None,
          kinds=None, base_model="m", policy="english_dev", baseline=BASELINE) -> pd.DataFrame:
    """target -> {task: gain in every zero-shot language}; English gets ``english_gain`` (task -> gain) when
    given, else the same gain. Task kinds from ``kinds`` or the name (syn* / sem*); 'none' is the baseline."""
    rows = []
    for target, by_task in gains.items():
        for task, gain in {"none": 0.0, **by_task}.items():
            kind = "none" if task == "none" else (kinds or {}).get(task, "syntactic" if task.startswith("syn")
                                                                      else "semantic")
            for seed in seeds:
                for language in languages:
                    g = (english_gain or {}).get(task, gain) if language == "en" else gain
                    rows.append({"base_model": base_model, "target": target, "target_group": "g",
                                 "target_format": "classification", "policy": policy, "intermediate": task,
                                 "kind": kind, "seed": seed, "language": language,
                                 "score": baseline + LANGUAGE_OFFSET.get(language, 0.0) + (0.0 if task == "none" else g), "own_data": False,
                                 "run_id": f"{target}-{task}-{seed}", "intermediate_tasks": task,
                                 "cell_id": f"{target}-{task}-{seed}", "declared_policy": policy})
    return pd.DataFrame(rows)
