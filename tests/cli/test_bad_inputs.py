"""A corpus of bad input to a real (not dry) `xgrid search SPACE --output-dir DIR`: each case exits 2 with one
`error:` line naming the field, flag or path, no traceback, and writes nothing (no search folder, no store, no
mlflow.db). Every case is refused before Ray starts: Ray is replaced by a tripwire that fails the test, so a case
that slips through fails fast instead of running a search. test_search_validation.py holds the dry-run cases of
wrong fields; this corpus covers the file itself, numbers, flags and paths.

Unwritable folders: the tests run as root here, and root may write a folder whatever its mode bits, so a
`chmod 0o555` folder is only tested when not root. What is tested everywhere is a path under a regular file (no
one can make it), and, where the machine has one, a read-only mount (/proc/sys in most containers), which
`os.access` reports as unwritable even to root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xgrid.cli import app
from tests.assertions import one_line_error

# Small and valid: the corpus edits it one way at a time.
VALID = """\
name: bad-inputs
base_models:
  - name: tiny
    source: embedded:tiny
intermediates: [none, mb_chunk]
targets: [mb_udpos]
seeds: [0, 1]
target_training:
  learning_rate: {low: 0.0005, high: 0.005, log: true}
  epochs: 1
search:
  trials_per_cell: 1
"""


def replaced(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


def added(text: str) -> str:
    return VALID + text


def bomb(levels: int = 9) -> str:
    """The "billion laughs": each level repeats the previous one ten times (10**9 values in 300 bytes)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return VALID + "\n".join(lines) + "\n"


# (id, space file content: str or bytes, fragments the error line must hold)
SPACE_CASES = [
    ("latin-1 byte", VALID.encode() + b"description: caf\xe9\n", ["not UTF-8 text: byte 0xe9 at offset 266 (line 13)"]),
    ("utf-16 file", VALID.encode("utf-16"), ["not UTF-8 text: byte 0xff at offset 0 (line 1)"]),
    ("binary junk", b"\x00\x01\x02\xff\xfe" * 50, ["not UTF-8 text: byte 0xff at offset 3"]),
    ("control char", added("description: a\x01b\n"), ["not valid YAML: character U+0001 at position", "control characters"]),
    ("empty file", "", ["the file is empty"]),
    ("a list", "- a\n- b\n", ["a search space is a YAML mapping, got list"]),
    ("a scalar", "just words\n", ["a search space is a YAML mapping, got str"]),
    ("syntax error", replaced("targets: [mb_udpos]", "targets: [mb_udpos"), ["not valid YAML (line"]),
    ("tab indent", replaced("  epochs: 1", "\tepochs: 1"), ["not valid YAML (line 10"]),
    ("duplicate top key", added("seeds: [5]\n"), ["duplicate key 'seeds' (first given on line 7)", "(line 13,"]),
    ("duplicate nested key", replaced("  epochs: 1", "  epochs: 1\n  epochs: 2"),
     ["duplicate key 'epochs' (first given on line 10)", "(line 11,"]),
    ("duplicate flow key", replaced("{low: 0.0005,", "{low: 0.0005, low: 0.001,"), ["duplicate key 'low'", "(line 9,"]),
    ("alias bomb", bomb(), ["YAML aliases expand to more than 2,000,000 values"]),
    ("recursive alias", added("description: &d [*d]\n"), ["a YAML alias refers to a value that contains it"]),
    ("unhashable key", added("? [a, b]\n: 1\n"), ["not valid YAML (line 13", "unhashable key"]),
    ("5000-digit seed", replaced("seeds: [0, 1]", "seeds: [0, " + "9" * 5000 + "]"),
     ["not valid YAML (line 7, column 12): cannot read '9999", "Exceeds the limit"]),
    ("impossible date", added("description: 2024-13-45\n"), ["not valid YAML (line 13", "cannot read '2024-13-45'"]),
    ("a date as text", added("description: 2024-01-31\n"), ["description: Input should be a valid string"]),
    ("inf fixed rate", replaced("{low: 0.0005, high: 0.005, log: true}", ".inf"),
     ["target_training.learning_rate.fixed: Input should be a finite number"]),
    ("nan range low", replaced("{low: 0.0005,", "{low: .nan,"),
     ["target_training.learning_rate.range.low: Input should be a finite number"]),
    ("inf choice", replaced("{low: 0.0005, high: 0.005, log: true}", "{values: [0.001, .inf]}"),
     ["target_training.learning_rate.choices.values[1]: Input should be a finite number"]),
    ("inf as text", replaced("{low: 0.0005, high: 0.005, log: true}", "'inf'"),
     ["target_training.learning_rate.fixed: Input should be a finite number"]),
    ("rate of 2 in a range", replaced("high: 0.005", "high: 2"), ["target_training.learning_rate.range.high: Input should be less than 1"]),
    ("inf intermediate rate", added("intermediate_training: {learning_rate: .inf}\n"),
     ["intermediate_training.learning_rate: Input should be a finite number"]),
    ("inf grad clip", replaced("  epochs: 1", "  epochs: 1\n  grad_clip: .inf"), ["target_training.grad_clip: Input should be a finite number"]),
    ("nan warmup", replaced("  epochs: 1", "  epochs: 1\n  warmup_ratio: .nan"), ["target_training.warmup_ratio: Input should be a finite number"]),
    ("inf reduction factor", replaced("  trials_per_cell: 1", "  trials_per_cell: 1\n  reduction_factor: .inf"),
     ["search.reduction_factor: Input should be a finite number"]),
    ("reduction factor 1", replaced("  trials_per_cell: 1", "  trials_per_cell: 1\n  reduction_factor: 1"),
     ["search.reduction_factor: Input should be greater than 1"]),
    ("seed of 2**32", replaced("seeds: [0, 1]", "seeds: [0, 4294967296]"), ["seeds[1]: Input should be less than 4294967296"]),
    ("negative seed", replaced("seeds: [0, 1]", "seeds: [0, -1]"), ["seeds[1]: Input should be greater than or equal to 0"]),
    ("huge sampler seed", replaced("  trials_per_cell: 1", "  trials_per_cell: 1\n  sampler_seed: 1099511627776"),
     ["search.sampler_seed: Input should be less than 4294967296"]),
    ("negative microbench seed", added("microbench_seed: -1\n"), ["microbench_seed: Input should be greater than or equal to 0"]),
    ("negative retrieval layer", added("retrieval: {layer: -1}\n"), ["retrieval.layer: Input should be greater than or equal to 0"]),
    ("absurd retrieval layer", added("retrieval: {layer: 100000}\n"), ["retrieval.layer: Input should be less than or equal to 256"]),
    ("epochs as words", replaced("  epochs: 1", "  epochs: three"), ["target_training.epochs: Input should be a valid integer"]),
    ("zero epochs", replaced("  epochs: 1", "  epochs: 0"), ["target_training.epochs: Input should be greater than or equal to 1"]),
    ("seeds as text", replaced("seeds: [0, 1]", "seeds: '0, 1'"), ["seeds: Input should be a valid list"]),
    ("models as a mapping", replaced("  - name: tiny\n    source: embedded:tiny", "  name: tiny"), ["base_models: Input should be a valid list"]),
    ("a million trials per cell", replaced("trials_per_cell: 1", "trials_per_cell: 1000000"),
     ["search.trials_per_cell: Input should be less than or equal to 1000"]),
    ("zero cpus in the space", added("resources: {cpus_per_worker: 0}\n"), ["resources.cpus_per_worker: Input should be greater than 0"]),
    ("typo: top level", added("selection_polcy: target_dev\n"), ["selection_polcy: unknown field; did you mean 'selection_policy'?"]),
    ("typo: nested", added("resources: {max_concurent_trials: 2}\n"),
     ["resources.max_concurent_trials: unknown field; did you mean 'max_concurrent_trials'?"]),
    ("typo: task", replaced("targets: [mb_udpos]", "targets: [mb_udpo]"), ["targets[0]: unknown task 'mb_udpo'"]),
    ("a URL in local_paths", replaced("intermediates: [none, mb_chunk]", "intermediates: [none, ccg]") + "local_paths: {ccg: 's3://b/ccg'}\n",
     ["local_paths.ccg: a folder on a file system every node sees"]),
]


@pytest.fixture
def no_ray(monkeypatch):
    """Ray must never start for bad input: `ray.init` is a tripwire."""
    import ray

    def tripwire(*args, **kwargs):
        raise AssertionError("Ray was started for bad input")

    monkeypatch.setattr(ray, "init", tripwire)


def everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def refused(tmp_path: Path, args: list[str], *fragments: str, space: Path | None = None):
    """Runs the real search into tmp_path/runs; asserts one error line naming what is wrong and that nothing
    under tmp_path was added (no output folder, search folder, store or mlflow.db)."""
    before = everything_under(tmp_path)
    space_args = [str(space)] if space is not None else []
    if not any(a == "--output-dir" for a in args):
        args = [*args, "--output-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, ["search", *space_args, *args])
    one_line_error(result, *fragments)
    assert everything_under(tmp_path) == before, "bad input wrote something"
    return result


@pytest.mark.parametrize("content,fragments", [c[1:] for c in SPACE_CASES], ids=[c[0] for c in SPACE_CASES])
def test_a_bad_space_file_is_refused_naming_what_is_wrong(tmp_path, no_ray, content, fragments):
    space = tmp_path / "space.yaml"
    if isinstance(content, bytes):
        space.write_bytes(content)
    else:
        space.write_text(content, encoding="utf-8")
    refused(tmp_path, [], *fragments, space=space)


def test_the_valid_space_of_the_corpus_is_valid(tmp_path):
    """Each case breaks one thing: the base it edits passes."""
    space = tmp_path / "space.yaml"
    space.write_text(VALID)
    result = CliRunner().invoke(app, ["search", str(space), "--dry-run"])
    assert result.exit_code == 0, result.output


def test_a_folder_as_the_space_is_refused(tmp_path, no_ray):
    (tmp_path / "spaces").mkdir()
    refused(tmp_path, [], "spaces: is a folder, not a space file", space=tmp_path / "spaces")


def test_a_pipe_as_the_space_is_refused_without_reading_it(tmp_path, no_ray):
    os.mkfifo(tmp_path / "space.yaml")  # reading it would block forever
    refused(tmp_path, [], "space.yaml: is not a regular file", space=tmp_path / "space.yaml")


def test_a_name_too_long_for_the_file_system_is_refused(tmp_path, no_ray):
    refused(tmp_path, [], "search space file cannot be opened", "File name too long", space=tmp_path / ("x" * 5000))


def test_a_10_mb_space_file_is_refused_by_its_size_before_it_is_read(tmp_path, no_ray):
    space = tmp_path / "space.yaml"
    space.write_text(VALID + "# padding\n" * (10 * 2**20 // 10))
    refused(tmp_path, [], f"{space}: {space.stat().st_size:,} bytes is too big for a search space (at most 4,194,304)",
            space=space)


def test_a_grid_of_millions_of_cells_is_refused_in_seconds(tmp_path, no_ray):
    """200,000 seeds (1.4 MB): the duplicate checks are linear, and the grid is refused before it is planned."""
    space = tmp_path / "space.yaml"
    space.write_text(replaced("seeds: [0, 1]", "seeds: [" + ", ".join(map(str, range(200_000))) + "]"))
    refused(tmp_path, [], "the grid has 400,000 cells", "more than the 100,000 a search can plan", space=space)
    space.write_text(replaced("seeds: [0, 1]", "seeds: [" + ", ".join(map(str, range(200_000))) + ", 7]"))
    refused(tmp_path, [], "seeds: duplicate entries: 7", space=space)


# --- flags: the error names the flag, not the space field it overrides --------------------------------------
FLAG_CASES = [
    (["--max-concurrent", "0"], "--max-concurrent 0: must be at least 1"),
    (["--max-concurrent", "-3"], "--max-concurrent -3: must be at least 1"),
    (["--max-concurrent", "1000000"], "--max-concurrent 1000000: must be at most 100000"),
    (["--max-concurrent", "two"], "--max-concurrent two: not a whole number"),
    (["--max-concurrent", "1.5"], "--max-concurrent 1.5: not a whole number"),
    (["--workers-per-trial", "-1"], "--workers-per-trial -1: must be at least 1"),
    (["--workers-per-trial", "0"], "--workers-per-trial 0: must be at least 1"),
    (["--cpus-per-worker", "0"], "--cpus-per-worker 0: must be above 0"),
    (["--cpus-per-worker", "-0.5"], "--cpus-per-worker -0.5: must be above 0"),
    (["--cpus-per-worker", "inf"], "--cpus-per-worker inf: not a finite number"),
    (["--gpus-per-worker", "-1"], "--gpus-per-worker -1: must be at least 0"),
    (["--gpus-per-worker", "nan"], "--gpus-per-worker nan: not a finite number"),
    (["--trial-backend", "inlne"], "--trial-backend 'inlne': not one of auto, ray_train, inline; did you mean 'inline'?"),
    (["--trial-backend", "slurm"], "--trial-backend 'slurm': not one of auto, ray_train, inline"),
    (["--trial-backend", ""], "--trial-backend '': not one of auto, ray_train, inline"),
    # Refused by the command line parser itself, before xgrid sees the command: one line all the same.
    (["--format", "xml"], "Invalid value for '--format': 'xml' is not one of 'table', 'json'"),
    (["--max-concurent", "2"], "No such option: --max-concurent"),
    (["--dry-run=yes"], "Option '--dry-run' does not take a value"),
]


@pytest.mark.parametrize("args,fragment", FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_a_bad_flag_is_refused_naming_the_flag(tmp_path, no_ray, args, fragment):
    refused(tmp_path, args, fragment)


def test_flags_in_range_pass(tmp_path):
    result = CliRunner().invoke(app, ["search", "--dry-run", "--max-concurrent", "3", "--workers-per-trial", "1",
                                      "--cpus-per-worker", "0.5", "--gpus-per-worker", "0", "--trial-backend", "inline"])
    assert result.exit_code == 0, result.output


def test_help_shows_what_each_flag_takes():
    result = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert "INTEGER>=1" in result.output and "FLOAT>0" in result.output and "[auto|ray_train|inline]" in result.output


# --- paths: an output folder or store that cannot be made or written ----------------------------------------
def test_an_output_dir_that_is_a_file_is_refused(tmp_path, no_ray):
    (tmp_path / "a-file").write_text("")
    refused(tmp_path, ["--output-dir", str(tmp_path / "a-file")], f"--output-dir {tmp_path / 'a-file'}: is a file, not a folder")


def test_an_output_dir_under_a_file_is_refused(tmp_path, no_ray):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "runs"
    refused(tmp_path, ["--output-dir", str(out)], f"--output-dir {out}: cannot be made: {tmp_path / 'a-file'} is a file")


def test_a_store_root_that_is_a_file_is_refused(tmp_path, no_ray):
    (tmp_path / "a-file").write_text("")
    refused(tmp_path, ["--store-root", str(tmp_path / "a-file")], f"--store-root {tmp_path / 'a-file'}: is a file, not a folder")


def test_a_store_root_under_a_file_is_refused(tmp_path, no_ray):
    (tmp_path / "a-file").write_text("")
    store = tmp_path / "a-file" / "store"
    refused(tmp_path, ["--store-root", str(store)], f"--store-root {store}: cannot be made: {tmp_path / 'a-file'} is a file")


def test_a_file_where_the_default_store_goes_is_refused(tmp_path, no_ray):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "store").write_text("")
    refused(tmp_path, [], f"--output-dir {tmp_path / 'runs' / 'store'}: is a file, not a folder")


def test_a_dry_run_refuses_a_file_in_the_way_too(tmp_path):
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["search", "--dry-run", "--output-dir", str(tmp_path / "a-file" / "runs")])
    one_line_error(result, "--output-dir", "cannot be made")


def test_a_remote_store_root_is_not_checked_here(tmp_path):
    result = CliRunner().invoke(app, ["search", "--dry-run", "--store-root", "s3://bucket/xgrid"])
    assert result.exit_code == 0, result.output


def _read_only_folder() -> Path | None:
    """A folder this process cannot write even as root: a read-only mount (/proc/sys in most containers)."""
    for candidate in (Path("/proc/sys"), Path("/sys/fs/cgroup")):
        if candidate.is_dir() and not os.access(candidate, os.W_OK):
            return candidate
    return None


@pytest.mark.skipif(_read_only_folder() is None, reason="no read-only mount on this machine")
def test_an_output_dir_on_a_read_only_mount_is_refused(tmp_path, no_ray):
    folder = _read_only_folder()
    refused(tmp_path, ["--output-dir", str(folder / "xgrid-runs")], f"--output-dir {folder / 'xgrid-runs'}: cannot be made: "
            f"{folder} is not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a folder whatever its mode bits")
def test_an_output_dir_in_a_read_only_folder_is_refused(tmp_path, no_ray):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused(tmp_path, ["--output-dir", str(locked / "runs")], f"{locked} is not writable")
    finally:
        locked.chmod(0o755)


# --- addresses and URIs ------------------------------------------------------------------------------------
def test_a_bogus_tracking_uri_is_refused(tmp_path, no_ray):
    refused(tmp_path, ["--tracking-uri", "bogus://x"], "--tracking-uri bogus://x: ", "unsupported scheme 'bogus'")


def test_a_ray_address_with_nothing_listening_is_refused(tmp_path, no_ray):
    refused(tmp_path, ["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray head answers there")


def test_the_corpus_has_at_least_40_cases():
    assert len(SPACE_CASES) + len(FLAG_CASES) >= 40  # and the folder, pipe, size, path and address tests above


# --- the real command line, in a process of its own ---------------------------------------------------------
@pytest.mark.parametrize("content,args,fragment", [
    (VALID.encode() + b"description: caf\xe9\n", [], "not UTF-8 text: byte 0xe9 at offset 266 (line 13)"),
    (VALID.encode() + b"#" * (10 * 2**20), [], "bytes is too big for a search space"),
    (VALID.encode(), ["--max-concurrent", "0"], "--max-concurrent 0: must be at least 1"),
    (VALID.encode(), ["--trial-backend", "slurm"], "--trial-backend 'slurm': not one of"),
], ids=["non-utf-8", "10 MB", "--max-concurrent 0", "--trial-backend slurm"])
def test_the_command_line_refuses_bad_input_in_one_line(tmp_path, content, args, fragment):
    space = tmp_path / "space.yaml"
    space.write_bytes(content)
    out = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "xgrid.cli", "search", str(space), "--output-dir", str(out), *args],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not out.exists()
