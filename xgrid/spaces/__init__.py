"""The search spaces shipped with xgrid, addressable by name from any folder.

Every `*.yaml` in this folder is installed with the package (package-data); `search_spaces/` at the top of a
checkout holds relative symlinks to them, so `search_spaces/<file>.yaml` works there too. A shipped space is
named by its `name:` field (`xtreme-r-syntactic-vs-semantic`) or by its file stem, with `_` or `-`
(`xtreme_r_syntactic_vs_semantic`).
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path

import yaml

from xgrid.config import SpaceError

SPACES_DIR = Path(__file__).resolve().parent
DEFAULT_SPACE = SPACES_DIR / "microbench_default.yaml"


@functools.lru_cache(maxsize=1)
def _scan() -> tuple[tuple[str, Path], ...]:
    found = []
    for path in sorted(SPACES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        name = data.get("name") if isinstance(data, dict) else None
        found.append((str(name) if name else path.stem.replace("_", "-"), path))
    return tuple(found)


def shipped_spaces() -> dict[str, Path]:
    """The spaces installed with xgrid: the `name:` of each one -> its YAML file, sorted by name."""
    return dict(sorted(_scan()))


def _key(text: str) -> str:
    return text.strip().lower().replace("_", "-")


def _aliases() -> dict[str, str]:
    """Every accepted spelling (normalized) -> the space's name."""
    aliases: dict[str, str] = {}
    for name, path in shipped_spaces().items():
        aliases.setdefault(_key(path.stem), name)
        aliases[_key(name)] = name  # a name wins over another file's stem
    return aliases


def _did_you_mean(arg: str) -> str:
    aliases = _aliases()
    for probe in dict.fromkeys((_key(arg), _key(Path(arg).stem))):
        close = difflib.get_close_matches(probe, list(aliases), n=1, cutoff=0.6)
        if close:
            return f"; did you mean {aliases[close[0]]!r}?"
    return ""


def resolve_space(arg: str | os.PathLike[str] | None) -> Path:
    """The YAML file a space argument means.

    None: the default space (the embedded micro-benchmark). An existing file: that file. The name or file stem
    of a shipped space: its file. Anything else (a folder, a typo) raises `SpaceError` with one line naming the
    argument and the shipped names.
    """
    if arg is None:
        return DEFAULT_SPACE
    text, path = os.fspath(arg), Path(arg)
    shown = text if text.isprintable() else repr(text)
    try:
        is_file, is_dir, exists = (path.is_file(), path.is_dir(), os.path.lexists(path)) if text else (False,) * 3
    except OSError as err:  # a name longer than the file system allows
        raise SpaceError(f"search space file cannot be opened: {shown[:200]}: {err.strerror or err}") from None
    if is_file:
        return path
    name = _aliases().get(_key(text))
    if name is not None:
        return shipped_spaces()[name]
    shipped = ", ".join(shipped_spaces())
    if is_dir:
        raise SpaceError(f"{shown}: is a folder, not a space file; give a space YAML file or the name of a "
                         f"shipped space ({shipped})")
    if exists:  # a pipe, a device, a broken link: reading it would block, never end, or fail
        raise SpaceError(f"{shown}: is not a regular file (a pipe, a device or a broken link); give a space YAML file")
    raise SpaceError(f"search space file not found: {shown or repr(text)} (neither a file nor a shipped space: "
                     f"{shipped}){_did_you_mean(text)}")
