"""The README's set-up and test commands are what CI runs (and what a new user types)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_setup_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    setup, test = readme_block("Set-up"), readme_block("Test")
    assert "\n" not in setup, "the README has exactly one set-up command"
    assert "pip install torch==2.13.0" in setup
    assert setup in ci and test in ci


def test_default_space_is_shipped_in_the_package_and_in_search_spaces():
    packaged = ROOT / "xgrid" / "spaces" / "microbench_default.yaml"
    shown = ROOT / "search_spaces" / "microbench_default.yaml"
    assert packaged.read_text() == shown.read_text()


def test_the_python_example_imports_what_exists():
    """The README's Python example names real modules and functions (running it is a whole search)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)\n```", text.split("## Architecture", 1)[1], re.S).group(1)
    imports = [line for line in block.splitlines() if line.startswith(("from ", "import "))]
    assert len(imports) >= 5
    exec("\n".join(imports), {})


def test_the_bad_space_example_prints_what_the_readme_shows(tmp_path):
    """The README's `bad.yaml` and its error, run for real; and the error the text says comes next."""
    from typer.testing import CliRunner

    from xgrid.cli import app

    example = (ROOT / "README.md").read_text().split("$ cat bad.yaml\n", 1)[1]
    space, rest = example.split("$ xgrid search bad.yaml\n", 1)
    shown = rest.split("```", 1)[0].strip()
    (tmp_path / "bad.yaml").write_text(space)
    result = CliRunner().invoke(app, ["search", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and result.stderr.strip() == shown
    fixed = space.replace("{low: 0.01, high: 0.0001}", "{low: 0.0001, high: 0.01}")
    (tmp_path / "bad.yaml").write_text(fixed)
    result = CliRunner().invoke(app, ["search", str(tmp_path / "bad.yaml")])
    following = re.search(r"the next run\s+says `(error: [^`]+)`", example).group(1)
    assert result.exit_code == 2 and result.stderr.strip() == following
