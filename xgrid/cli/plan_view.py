"""The plan of a search as `xgrid search --dry-run` shows it: a table for people, JSON for scripts (one source
of numbers for both), printed before anything runs."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from xgrid.cli.common import console
from xgrid.planning.cost import estimate
from xgrid.planning.plan import Plan


def target_rows(plan: Plan) -> list[dict[str, Any]]:
    """Per target: what the plan table shows and `--format json` prints (one source for both)."""
    rows = []
    for target in plan.space.targets:
        cells = plan.cells_for(target)
        rows.append({"target": target, "format": cells[0].target_format, "cells": len(cells),
                     "trials": sum(plan.trials_per_cell for c in cells if c.trains), "trains": cells[0].trains,
                     "intermediates": list(dict.fromkeys(c.intermediate for c in cells))})
    return rows


def plan_json(plan: Plan, store_root: str | None = None) -> dict[str, Any]:
    """The dry run for scripts: the numbers of `print_plan`, unrounded; null where the table says unknown."""
    space, cost = plan.space, estimate(plan)
    return {
        "space": space.name, "fingerprint": space.fingerprint(),
        "base_models": [m.name for m in space.base_models], "seeds": list(space.seeds),
        "selection_policy": space.selection_policy,
        "targets": target_rows(plan),
        "totals": {"cells": len(plan.cells), "stage1_checkpoints": cost.stage1_jobs,
                   "stage2_trials": cost.stage2_trials, "retrieval_evaluations": cost.retrieval_evals,
                   "stage1_example_passes": cost.stage1_example_passes,
                   "stage2_example_passes": cost.stage2_example_passes},
        "estimates": {"cpu_seconds_on_2_cpus": cost.cpu_seconds, "h100_gpu_hours": cost.gpu_hours},
        "notes": plan.notes + cost.notes,
    }


def print_plan(plan: Plan, store_root: str | None = None) -> None:
    space = plan.space
    cost = estimate(plan)
    console.print(f"[bold]search space[/] {space.name}  ({space.fingerprint()})")
    console.print(f"  base models: {', '.join(m.name for m in space.base_models)}   seeds: {space.seeds}   "
                  f"selection: {space.selection_policy}")
    table = Table(title="plan")
    for column in ("target", "format", "cells", "trials", "intermediates"):
        table.add_column(column)
    for row in target_rows(plan):
        table.add_row(row["target"], row["format"], str(row["cells"]),
                      str(row["trials"]) if row["trials"] else "- (scored, not trained)", ", ".join(row["intermediates"]))
    console.print(table)
    console.print(f"cells: {len(plan.cells)}   unique stage-1 checkpoints to train: {cost.stage1_jobs} "
                  f"(shared by {len(space.targets)} targets; never {cost.stage1_jobs * len(space.targets)})   "
                  f"stage-2 trials: {cost.stage2_trials}   retrieval evaluations: {cost.retrieval_evals}")
    passes = lambda n: "unknown" if n is None else f"{n:,}"
    console.print(f"training example-passes: stage 1 {passes(cost.stage1_example_passes)}, "
                  f"stage 2 {passes(cost.stage2_example_passes)}")
    if cost.cpu_seconds is not None:
        console.print(f"estimated wall time on 2 CPUs: ~{cost.cpu_seconds / 60:.1f} min")
    if cost.gpu_hours is not None:
        console.print(f"estimated compute: ~{cost.gpu_hours:,.0f} H100 GPU-hours (6*N*tokens at 40% MFU)")
    for note in plan.notes + cost.notes:
        console.print(f"[yellow]note:[/] {note}")
