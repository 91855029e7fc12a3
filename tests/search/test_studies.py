"""Where a search's Optuna studies live (`xgrid.search.studies`): a new folder gets Optuna's journal file, a folder
of an earlier xgrid with only its SQLite `optuna.db` keeps it (so resuming it and `xgrid status` still read its
trials), the printed optuna-dashboard command opens either as printed (checked with optuna-dashboard's own storage
parsing), and the searcher Tune checkpoints by pickling goes on writing the same journal after a restore."""

from __future__ import annotations

import pickle
import shlex

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna_dashboard._storage_url import get_storage

from xgrid.search.studies import JOURNAL, LEGACY_DB, dashboard_command, study_file, study_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {"cell": CategoricalDistribution(["a", "b"]), "learning_rate": FloatDistribution(1e-4, 1e-2, log=True)}


def fill(study: optuna.Study, n: int = 3) -> None:
    for i in range(n):
        trial = study.ask(SPACE)
        trial.report(0.5 * i, 1)
        study.tell(trial, float(i))


def legacy_folder(folder, n: int = 3):
    """What an earlier xgrid left: the studies in SQLite `optuna.db`, no journal."""
    study = optuna.create_study(study_name="old.mb_udpos", direction="maximize",
                                storage=RDBStorage(f"sqlite:///{folder / LEGACY_DB}"))
    fill(study, n)
    return folder


def test_a_new_search_folder_gets_the_journal(tmp_path):
    assert study_file(tmp_path) == tmp_path.absolute() / JOURNAL
    storage = study_storage(tmp_path)
    assert isinstance(storage, JournalStorage) and (tmp_path / JOURNAL).is_file()
    fill(optuna.create_study(study_name="new.mb_udpos", direction="maximize", storage=storage))
    again = optuna.load_study(study_name="new.mb_udpos", storage=study_storage(tmp_path, read_only=True))
    assert [t.value for t in again.trials] == [0.0, 1.0, 2.0] and again.trials[2].intermediate_values == {1: 1.0}
    assert not (tmp_path / LEGACY_DB).exists()


def test_reading_a_folder_without_studies_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        study_storage(tmp_path, read_only=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("read_only", [False, True])
def test_a_folder_of_an_earlier_xgrid_keeps_its_sqlite_studies(tmp_path, read_only):
    legacy_folder(tmp_path)
    assert study_file(tmp_path) == tmp_path.absolute() / LEGACY_DB
    storage = study_storage(tmp_path, read_only=read_only)
    assert isinstance(storage, RDBStorage)
    study = optuna.load_study(study_name="old.mb_udpos", storage=storage)
    assert [t.value for t in study.trials] == [0.0, 1.0, 2.0]
    if not read_only:  # a resumed driver goes on adding trials to it
        fill(study, 1)
        assert len(optuna.load_study(study_name="old.mb_udpos", storage=study_storage(tmp_path)).trials) == 4
    assert not (tmp_path / JOURNAL).exists()
    storage.engine.dispose()


def test_once_a_folder_has_a_journal_the_journal_wins(tmp_path):
    legacy_folder(tmp_path)
    (tmp_path / JOURNAL).touch()
    assert study_file(tmp_path).name == JOURNAL and isinstance(study_storage(tmp_path), JournalStorage)


def test_the_dashboard_command_opens_the_journal_as_a_plain_path(tmp_path):
    folder = tmp_path / "with space"
    folder.mkdir()
    fill(optuna.create_study(study_name="new.mb_udpos", direction="maximize", storage=study_storage(folder)))
    words = shlex.split(dashboard_command(folder))
    assert words == ["optuna-dashboard", str(folder.absolute() / JOURNAL)]
    # optuna-dashboard's own parsing of that argument (0.16+: a file that is no SQLite database is a journal)
    storage = get_storage(words[1])
    assert isinstance(storage, JournalStorage)
    study = optuna.load_study(study_name="new.mb_udpos", storage=storage)
    assert [t.value for t in study.trials] == [0.0, 1.0, 2.0]


def test_the_dashboard_command_of_an_earlier_folder_is_its_sqlite_url(tmp_path):
    legacy_folder(tmp_path)
    words = shlex.split(dashboard_command(tmp_path))
    assert words == ["optuna-dashboard", f"sqlite:///{tmp_path.absolute() / LEGACY_DB}"]
    storage = get_storage(words[1])
    assert len(optuna.load_study(study_name="old.mb_udpos", storage=storage).trials) == 3
    storage.engine.dispose()
    with pytest.raises(ValueError, match="sqlite:///"):  # the plain path of an SQLite file is refused
        get_storage(str(tmp_path / LEGACY_DB))


def test_a_relative_folder_gets_an_absolute_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert shlex.split(dashboard_command("runs"))[1] == str(tmp_path / "runs" / JOURNAL)


def test_the_searcher_tune_checkpoints_goes_on_writing_the_journal_after_a_restore(tmp_path):
    """Tune pickles the searcher (`OptunaSearch.save`: its whole __dict__, the study and its storage with it) when
    it checkpoints the experiment; the copy it restores must still reach the same journal."""
    from xgrid.search.cell_search import CellOptunaSearch

    def searcher():
        return CellOptunaSearch(space=SPACE, metric="score", mode="max", storage=study_storage(tmp_path),
                                study_name="ck.mb_udpos", seed=0, cells={}, stopped_early=set())

    first = searcher()
    first.suggest("t0")
    first.on_trial_complete("t0", {"score": 1.0})
    first.suggest("t1")  # still running when the checkpoint is taken
    first.on_trial_result("t1", {"score": 0.5, "training_iteration": 1})
    first.save_to_dir(str(tmp_path), session_str="s")
    assert pickle.loads(pickle.dumps(first._storage))._backend._file_path == str(tmp_path.absolute() / JOURNAL)

    restored = searcher()
    restored.restore_from_dir(str(tmp_path))
    assert restored._ot_study is not first._ot_study and set(restored._ot_trials) == {"t0", "t1"}
    restored.on_trial_complete("t1", {"score": 2.0})
    restored.suggest("t2")
    restored.on_trial_complete("t2", {"score": 3.0})

    study = optuna.load_study(study_name="ck.mb_udpos", storage=study_storage(tmp_path, read_only=True))
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 1.0), ("COMPLETE", 2.0),
                                                               ("COMPLETE", 3.0)]
    assert study.trials[1].intermediate_values == {1: 0.5}
