"""Where a search's Optuna studies live: one file in the search folder, one study per trained target
(`<space>.<target>`, see `xgrid.search.stage2`).

The file is Optuna's journal (`optuna.journal`, JournalStorage over a JournalFileBackend): an ask, the epoch
reports and a tell cost the driver about 7 ms of CPU per trial with TPE, where the SQLite RDBStorage cost
about 98 ms at 250 trials and grew with the study. A folder made by an earlier xgrid holds `optuna.db` (SQLite)
and no journal: it keeps its SQLite storage, so that resuming it and `xgrid status` on it still find its trials.
"""

from __future__ import annotations

import shlex
from pathlib import Path

JOURNAL = "optuna.journal"
LEGACY_DB = "optuna.db"  # SQLite, written by xgrid before the journal


def study_file(search_dir: Path) -> Path:
    """The file holding the search's studies (it may not exist yet): the journal, unless the folder only has
    an earlier xgrid's `optuna.db`."""
    search_dir = Path(search_dir).absolute()
    journal, legacy = search_dir / JOURNAL, search_dir / LEGACY_DB
    return legacy if legacy.is_file() and not journal.exists() else journal


def study_storage(search_dir: Path, read_only: bool = False):
    """The Optuna storage of the search's studies. A missing journal is created (empty), unless `read_only`,
    which then raises FileNotFoundError; `read_only` also leaves an SQLite file's tables and version alone."""
    import optuna

    path = study_file(search_dir)
    if path.name == LEGACY_DB:
        return optuna.storages.RDBStorage(f"sqlite:///{path}", skip_compatibility_check=read_only,
                                          skip_table_creation=read_only)
    if read_only and not path.is_file():
        raise FileNotFoundError(f"no Optuna journal at {path}")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def dashboard_command(search_dir: Path) -> str:
    """What a user runs to see the search's studies: optuna-dashboard (0.16+) opens a journal file given as a
    plain path, and an SQLite file only as a `sqlite:///` URL."""
    path = study_file(search_dir)
    return f"optuna-dashboard {shlex.quote(f'sqlite:///{path}' if path.name == LEGACY_DB else str(path))}"
