"""What identifies a base model in a checkpoint's key: the content of a local folder's files, or a hub id.

A local folder is named by its path, but what a checkpoint trained from it depends on is the files in it: the
same path may hold another model tomorrow (a re-download, a fine-tune written over it), and the same model may
be moved to another folder. So a local model is identified by a hash of the files it is loaded from (weights,
config, tokenizer: the patterns `xgrid prefetch` downloads), each as (name, size, sha256). Hashing is the slow
part (a 10 GB model takes seconds): each file's digest is remembered for the process per (path, inode, mtime,
size), so planning twice hashes it once, while a file written over or replaced (a copy keeps the mtime of its
original, never its inode) is hashed again.

Hub ids and the embedded tiny model keep their name: a hub id is the hub's name for one model, and the tiny
model is built from a config object and the micro-benchmark seed (which its key carries already).
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
from pathlib import Path
from typing import Any

from xgrid.config import EMBEDDED_TINY
from xgrid.models.hub import MODEL_SMALL_FILES

# The files a model folder is loaded from (configs, tokenizer files, weights): a README or a log written next to
# them does not change the model.
MODEL_FILES = MODEL_SMALL_FILES + ["*.safetensors", "*.bin", "*.pt", "*.pth"]
CHUNK = 8 << 20

_digests: dict[tuple[str, int, int, int], str] = {}
_lock = threading.Lock()


def local_folder(source: str) -> Path | None:
    """The folder a source names on this machine, or None (the embedded model, a hub id, a folder not here)."""
    if source == EMBEDDED_TINY:
        return None
    path = Path(source).expanduser()
    return path if path.is_dir() else None


def model_files(folder: Path) -> list[Path]:
    """The files of a model folder that loading reads (top level only, as `from_pretrained` does), sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and any(fnmatch.fnmatch(p.name, pattern) for pattern in MODEL_FILES))


def file_digest(path: Path) -> str:
    """sha256 of one file, remembered per (resolved path, inode, mtime, size): a changed file is hashed again."""
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    with _lock:
        known = _digests.get(cache_key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _digests[cache_key] = value
    return value


def content_digest(folder: Path) -> str:
    """One hash of a model folder's files: their names, sizes and contents (not the folder's own path)."""
    entries = [[p.name, p.stat().st_size, file_digest(p)] for p in model_files(folder)]
    return hashlib.sha256(repr(entries).encode()).hexdigest()


def model_identity(source: str) -> dict[str, Any]:
    """What a key hashes for a base model source: {"content": ...} for a local folder, {"source": ...} for a hub
    id or the embedded model (the form keys had before content hashing, so their checkpoints keep their keys)."""
    folder = local_folder(source)
    if folder is None:
        return {"source": source}
    return {"content": content_digest(folder)}


def forget_digests() -> None:
    """Drop the remembered file digests (tests, or a process that rewrites model files in place within one
    mtime tick)."""
    with _lock:
        _digests.clear()
