"""`xgrid search [SPACE]`: validate the space, print its plan (--dry-run), or run it on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console, read_space
from xgrid.cost import estimate
from xgrid.plan import Plan, build_plan
from xgrid.tasks import TaskRegistry, default_registry


def search(
    space: Annotated[Optional[Path], typer.Argument(help="search-space YAML (default: the embedded micro-benchmark)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate and print the plan and its cost; run nothing")] = False,
) -> None:
    """Run a transfer grid: stage 1 trains each intermediate checkpoint once, stage 2 searches each target."""
    registry = default_registry()
    config = read_space(space, registry)
    plan = build_plan(config, registry)
    print_plan(plan, registry)
    if dry_run:
        return


def print_plan(plan: Plan, registry: TaskRegistry) -> None:
    space = plan.space
    cost = estimate(plan, registry)
    console.print(f"[bold]search space[/] {space.name}  ({space.fingerprint()})")
    console.print(f"  base models: {', '.join(m.name for m in space.base_models)}   seeds: {space.seeds}   "
                  f"selection: {space.selection_policy}")
    table = Table(title="plan")
    for column in ("target", "format", "cells", "trials", "intermediates"):
        table.add_column(column)
    trials_per_cell = space.search.trials_per_cell if space.target_training.searched else 1
    for target in space.targets:
        cells = plan.cells_for(target)
        fmt = registry.get(target).format
        trials = 0 if fmt == "retrieval" else len(cells) * trials_per_cell
        table.add_row(target, fmt, str(len(cells)), str(trials) if trials else "- (scored, not trained)",
                      ", ".join(dict.fromkeys(c.intermediate for c in cells)))
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
