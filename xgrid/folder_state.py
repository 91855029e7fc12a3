"""A search folder's `search_state.json`: the search's status and what its tracker opened, rewritten atomically on
every change (`xgrid.search.resume` reads it to continue a search). It sits below the search and the trackers,
like `xgrid.events`, since both write it."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

STATE_FILE = "search_state.json"
_state_lock = threading.Lock()  # the runner and the tracker update the same file from the driver


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and os.replace: a reader (or a driver killed mid-write)
    sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_state(search_dir: Path) -> dict[str, Any]:
    """The folder's search_state.json ({} when there is none: a search from before resume existed, or one
    that died before writing it)."""
    try:
        return json.loads((Path(search_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def update_state(search_dir: Path, **fields: Any) -> dict[str, Any]:
    """Set `fields` in search_state.json, keeping the others; returns the new state."""
    with _state_lock:
        state = read_state(search_dir) | fields
        atomic_write(Path(search_dir) / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))
        return state
