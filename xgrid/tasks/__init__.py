"""The task registry. `default_registry()` holds every shipped entry: the embedded micro-benchmark and the
real XTREME-R targets and English intermediate tasks."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from xgrid.data.sources import LoadContext, MissingSplitError
from xgrid.tasks.registry import TaskRegistry, TaskSelection, UnknownTaskError
from xgrid.tasks.spec import KINDS, TaskSpec

# Each module listed here exposes ENTRIES: a tuple of TaskSpec. Adding a task = adding an entry to one of them.
ENTRY_MODULES = ("xgrid.tasks.embedded", "xgrid.tasks.hub")
# Other installed packages can contribute tasks without touching xgrid: an entry point in this group naming a
# module (or any object) with an ENTRIES attribute.
PLUGIN_GROUP = "xgrid.tasks"


def default_registry() -> TaskRegistry:
    """A fresh registry of every shipped and plugged-in entry (cheap: the entry modules are imported once)."""
    registry = TaskRegistry()
    modules = [importlib.import_module(name) for name in ENTRY_MODULES]
    modules += [ep.load() for ep in entry_points(group=PLUGIN_GROUP)]
    for module in modules:
        for spec in module.ENTRIES:
            registry.add(spec)
    return registry


# LoadContext and MissingSplitError live with the data sources; callers that load a task's data get them here.
__all__ = ["KINDS", "LoadContext", "MissingSplitError", "TaskRegistry", "TaskSelection", "TaskSpec",
           "UnknownTaskError", "default_registry"]
