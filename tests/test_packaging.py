"""What an installed xgrid carries: the shipped search spaces (addressable by name from any folder), the license,
and the extras the README names. The wheel is built from a copy of the sources, offline and without build
isolation (setuptools comes from the test environment), so nothing is written into the checkout."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xgrid.config import SpaceError
from xgrid.spaces import DEFAULT_SPACE, SPACES_DIR, resolve_space, shipped_spaces

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {
    "microbench-budget": "microbench_budget.yaml",
    "microbench-default": "microbench_default.yaml",
    "x-stilts-reproduction": "x_stilts_reproduction.yaml",
    "xtreme-r-syntactic-vs-semantic": "xtreme_r_syntactic_vs_semantic.yaml",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "xgrid", src / "xgrid", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build uses this environment's setuptools (>= 77 for the PEP 639 license), so the
    # test needs no index; --no-index makes sure it never reaches for one.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (built,) = out.glob("xgrid-*.whl")
    return built


def test_the_wheel_ships_every_space_the_package_module_and_the_license(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    spaces = {n for n in names if n.startswith("xgrid/spaces/")}
    assert spaces == {"xgrid/spaces/__init__.py"} | {f"xgrid/spaces/{f}" for f in SHIPPED.values()}
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = email.message_from_bytes(zipfile.ZipFile(wheel).read(meta_name))
    assert meta["License-Expression"] == "MIT"
    assert "ui" in meta.get_all("Provides-Extra") and "dev" in meta.get_all("Provides-Extra")


def test_the_installed_package_resolves_spaces_by_name_outside_a_checkout(wheel, tmp_path):
    """Unpacked (a pure wheel is what pip installs) and imported ahead of the checkout, from an empty folder."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import sys, xgrid.spaces as s\n"
             f"assert s.__file__.startswith({str(site)!r}), s.__file__\n"
             "for name in sys.argv[1:]:\n"
             "    path = s.resolve_space(name)\n"
             "    assert path.is_file() and path.parent == s.SPACES_DIR, path\n"
             "    print(name, path.name)\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe, *SHIPPED], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [word for name, file in SHIPPED.items() for word in (name, file)]


def test_shipped_spaces_are_named_by_their_name_field():
    assert {name: path.name for name, path in shipped_spaces().items()} == SHIPPED
    assert all(path.parent == SPACES_DIR for path in shipped_spaces().values())


@pytest.mark.parametrize("name, file", sorted(SHIPPED.items()))
def test_resolve_space_takes_the_name_and_the_file_stem(name, file):
    stem = file.removesuffix(".yaml")
    for spelling in (name, stem, stem.replace("_", "-"), name.replace("-", "_")):
        assert resolve_space(spelling) == SPACES_DIR / file, spelling
        assert resolve_space(Path(spelling)) == SPACES_DIR / file, spelling


def test_resolve_space_default_and_existing_files(tmp_path, monkeypatch):
    assert resolve_space(None) == DEFAULT_SPACE == SPACES_DIR / "microbench_default.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\n")
    assert resolve_space(own) == own and resolve_space(str(own)) == own
    # A file in the working folder wins over a shipped space of the same spelling.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "microbench-default").write_text("name: local\n")
    assert resolve_space("microbench-default") == Path("microbench-default")


def test_resolve_space_refuses_a_folder_naming_it(tmp_path):
    with pytest.raises(SpaceError) as info:
        resolve_space(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "is a folder, not a space file" in message
    assert all(name in message for name in SHIPPED)


@pytest.mark.parametrize("typo, meant", [("xtreme-r-syntactic-vs-semantc", "xtreme-r-syntactic-vs-semantic"),
                                         ("x_stilts_reproducton", "x-stilts-reproduction"),
                                         ("elsewhere/microbench_defalt.yaml", "microbench-default")])
def test_resolve_space_refuses_a_typo_with_a_did_you_mean(typo, meant):
    with pytest.raises(SpaceError) as info:
        resolve_space(typo)
    message = str(info.value)
    assert "\n" not in message and typo in message and "search space file not found" in message
    assert all(name in message for name in SHIPPED)
    assert message.endswith(f"; did you mean {meant!r}?")


def test_search_spaces_links_every_shipped_space():
    """search_spaces/ in a checkout holds relative links into the package, so the documented paths keep working."""
    links = sorted((ROOT / "search_spaces").glob("*.yaml"))
    assert sorted(p.name for p in links) == sorted(SHIPPED.values())
    for link in links:
        assert link.is_symlink() and not os.readlink(link).startswith("/")
        assert link.resolve() == (SPACES_DIR / link.name).resolve()


def test_the_ui_extra_has_the_dashboard_and_dev_includes_it():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("optuna-dashboard") for req in extras["ui"])
    assert "xgrid[ui]" in extras["dev"]
    assert "optuna-dashboard" in (ROOT / "README.md").read_text()


def test_search_dry_run_takes_a_shipped_space_by_name_from_any_folder(tmp_path, monkeypatch):
    from xgrid.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["search", "xtreme-r-syntactic-vs-semantic", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "xtreme-r-syntactic-vs-semantic" in result.output
    result = CliRunner().invoke(app, ["search", "xtreme-r-syntactic-vs-semantc", "--dry-run"])
    assert result.exit_code == 2
    assert "did you mean 'xtreme-r-syntactic-vs-semantic'?" in result.output
