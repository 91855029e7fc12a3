"""Content-addressed stage-1 checkpoints: `<root>/checkpoints/<key>/` holds a save_pretrained folder.

The root is a local folder by default, or any pyarrow filesystem URI (`s3://bucket/prefix`, `gs://...`) that
every node of a cluster sees. Remote checkpoints are mirrored into a local cache folder before use.

A checkpoint appears atomically: it is written into a staging folder beside its final place, a manifest (each
file's size and sha256) and then the completion marker are added, and the folder is renamed into place (a
remote root gets the files uploaded with the manifest and the marker last). A crashed writer never leaves a
half checkpoint that a later search would trust, and of two writers of one key the first rename wins: the
other's copy is discarded.

A node fetches what its trials need into its own cache (a remote root's mirror, `local_cache`): the driver hands
out keys, never its local paths (`running.encoders`). The cache is evicted by size, least recently used first,
down to `XGRID_CACHE_LIMIT_GB` (default 100); the checkpoint being fetched is never evicted.

Disks and object stores do lose bytes, so a checkpoint is verified against its manifest whenever it is handed
out (`fetch`, `find`; the local mirror of a remote root too). One that fails is moved to
`<root>/quarantine/<key>-<stamp>/` (kept for a post-mortem, out of the way of later searches) and counts as
missing: the caller trains it again. A corrupt checkpoint is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Callable

CACHE_LIMIT_ENV = "XGRID_CACHE_LIMIT_GB"
DEFAULT_CACHE_LIMIT_GB = 100.0
MARKER = "XGRID_COMPLETE"
MANIFEST = "XGRID_MANIFEST.json"
QUARANTINE = "quarantine"
_BOOKKEEPING = {MARKER, MANIFEST}


def is_uri(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class CorruptCheckpoint(Exception):
    """A committed checkpoint whose files do not match its manifest. Constructible from its message alone, so
    it survives Ray's copy of an exception; `key` and `file` are set where it is raised."""

    def __init__(self, message: str, key: str = "", file: str = "", moved_to: str | None = None):
        super().__init__(message)
        self.key, self.file, self.moved_to = key, file, moved_to


def _corrupt(key: str, file: str, reason: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(f"stage-1 checkpoint {key}: {file} {reason}", key, file)


# --- the manifest ---------------------------------------------------------------------------------------------
def _files(folder: Path) -> list[str]:
    """Every file under `folder` but the marker and the manifest, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() not in _BOOKKEEPING)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(folder: Path) -> None:
    files = {name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
             for name in _files(folder)}
    (folder / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1))


def verify_folder(folder: Path, key: str) -> None:
    """Raises CorruptCheckpoint naming the first file that is missing, extra, of the wrong size or content."""
    marker = folder / MARKER
    if not marker.is_file() or marker.read_text(errors="replace").strip() != key:
        raise _corrupt(key, MARKER, "does not name this key")
    if not (folder / MANIFEST).is_file():
        _verify_legacy(folder, key)
        return
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        expected = {str(name): (int(e["size"]), str(e["sha256"])) for name, e in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _corrupt(key, MANIFEST, "cannot be read") from None
    present = set(_files(folder))
    for name in sorted(present - set(expected)):  # an extra shard or index would change what loads
        raise _corrupt(key, name, "is not in the manifest")
    for name, (size, digest) in expected.items():  # sizes first: a truncation is found without hashing
        if name not in present:
            raise _corrupt(key, name, "is missing")
        actual = (folder / name).stat().st_size
        if actual != size:
            raise _corrupt(key, name, f"has {actual} bytes, the manifest says {size} (truncated?)")
    for name, (_, digest) in expected.items():
        if _sha256(folder / name) != digest:
            raise _corrupt(key, name, "does not match its sha256 in the manifest (bytes changed)")


def _verify_legacy(folder: Path, key: str) -> None:
    """A checkpoint committed before manifests existed: it is kept usable (retraining every old checkpoint of
    a store would cost more than the risk), after the checks its own files allow: a safetensors file whose
    size is not what its header declares (a truncation) and a JSON file that does not parse are corrupt.
    Flipped bits inside the tensors cannot be seen without a manifest: such a checkpoint is unverified."""
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or name in _BOOKKEEPING:
            continue
        if path.suffix == ".safetensors" and not _safetensors_complete(path):
            raise _corrupt(key, name, "is shorter or longer than its safetensors header declares (truncated?)")
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                raise _corrupt(key, name, "is not valid JSON") from None


def _safetensors_complete(path: Path) -> bool:
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > size - 8:
                return False
            header = json.loads(f.read(length))
        end = max((int(t["data_offsets"][1]) for n, t in header.items() if n != "__metadata__"), default=0)
    except (struct.error, ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError):
        return False
    return size == 8 + length + end


def cache_limit_bytes() -> int:
    """XGRID_CACHE_LIMIT_GB (GB = 10^9 bytes), DEFAULT_CACHE_LIMIT_GB when unset."""
    text = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    try:
        gigabytes = float(text) if text else DEFAULT_CACHE_LIMIT_GB
    except ValueError:
        raise ValueError(f"{CACHE_LIMIT_ENV}={text!r}: expected a number of GB (e.g. 200)") from None
    if gigabytes < 0:
        raise ValueError(f"{CACHE_LIMIT_ENV}={text!r}: expected a number of GB >= 0")
    return int(gigabytes * 1e9)


def _stamp() -> str:
    # The pid keeps two processes quarantining the same key in the same microsecond apart.
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{os.getpid()}"


class CheckpointStore:
    def __init__(self, root: str | os.PathLike, local_cache: str | os.PathLike | None = None):
        self.root = str(root)
        if is_uri(self.root):
            import pyarrow.fs

            self._fs, self._base = pyarrow.fs.FileSystem.from_uri(self.root)
            # One cache per root: two roots can hold the same key with other bytes (a training record's times).
            digest = hashlib.sha256(self.root.encode()).hexdigest()[:12]
            self.local = Path(local_cache or Path(tempfile.gettempdir()) / "xgrid-cache" / digest)
        else:
            self._fs, self._base = None, None
            self.local = Path(self.root.removeprefix("file://")).absolute()
        self._verified: set[str] = set()  # keys this process verified: a committed checkpoint never changes

    # --- queries -------------------------------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        return self.local / "checkpoints" / key

    def has(self, key: str) -> bool:
        """Committed (its marker is there). Cheap and unverified: what a plan's cost estimate needs; a search
        asks `find`, which verifies."""
        if (self.local_path(key) / MARKER).is_file():
            return True
        return self._fs is not None and self.has_remote(key)

    def check(self, key: str, on_corrupt: Callable[[CorruptCheckpoint], None] | None = None) -> bool:
        """Committed and whole, without bringing it to this machine: what the driver asks (the nodes fetch).
        A local root's checkpoint is verified in full (`find`); a remote one's manifest is read and every file's
        size checked against the listing (the bytes are hashed by the node that fetches it). A corrupt one is
        quarantined (`on_corrupt` hears why) and counts as missing: the caller trains it."""
        if self._fs is None:
            return self.find(key, on_corrupt) is not None
        if not self.has_remote(key):
            return False
        try:
            self._verify_remote_sizes(key)
        except CorruptCheckpoint as bad:
            bad.moved_to = self._quarantine_remote(key)
            if on_corrupt is not None:
                on_corrupt(bad)
            return False
        return True

    def read_text(self, key: str, name: str) -> str:
        """One file of a committed checkpoint (its training record, its manifest), without fetching the rest; of
        a remote root, the remote copy (what every node will fetch), not this machine's mirror."""
        local = self.local_path(key) / name
        if self._fs is None:
            try:
                return local.read_text()
            except FileNotFoundError:
                raise FileNotFoundError(f"stage-1 checkpoint {key}: no {name} under {self.root}") from None
        try:
            with self._fs.open_input_stream(f"{self._base}/checkpoints/{key}/{name}") as stream:
                return stream.read().decode()
        except FileNotFoundError:
            raise FileNotFoundError(f"stage-1 checkpoint {key}: no {name} under {self.root}") from None

    def _verify_remote_sizes(self, key: str) -> None:
        import pyarrow.fs

        try:
            files = json.loads(self.read_text(key, MANIFEST))["files"]
            expected = {str(name): int(e["size"]) for name, e in files.items()}
        except FileNotFoundError:
            return  # committed before manifests existed: checked where it is fetched (`_verify_legacy`)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _corrupt(key, MANIFEST, "cannot be read") from None
        base = f"{self._base}/checkpoints/{key}"
        listing = self._fs.get_file_info(pyarrow.fs.FileSelector(base, recursive=True))
        sizes = {info.path[len(base) + 1:]: info.size for info in listing if info.type == pyarrow.fs.FileType.File}
        for name in sorted(set(sizes) - set(expected) - _BOOKKEEPING):
            raise _corrupt(key, name, "is not in the manifest")
        for name, size in expected.items():
            if name not in sizes:
                raise _corrupt(key, name, "is missing")
            if sizes[name] != size:
                raise _corrupt(key, name, f"has {sizes[name]} bytes, the manifest says {size} (truncated?)")

    def find(self, key: str, on_corrupt: Callable[[CorruptCheckpoint], None] | None = None) -> Path | None:
        """The verified local folder of `key`, or None when it is not committed or was corrupt (then it has
        been quarantined and `on_corrupt` hears why): either way the caller trains it."""
        if not self.has(key):
            return None
        try:
            return self.fetch(key)
        except CorruptCheckpoint as bad:
            if on_corrupt is not None:
                on_corrupt(bad)
            return None
        except FileNotFoundError:  # quarantined or replaced by another process since `has`
            return None

    def fetch(self, key: str) -> Path:
        """A verified local folder holding the checkpoint (downloaded once from a remote root). Raises
        FileNotFoundError when there is none, CorruptCheckpoint (after quarantining it) when it fails its
        manifest."""
        local = self.local_path(key)
        if key in self._verified and (local / MARKER).is_file():
            self._used(local)
            return local
        if (local / MARKER).is_file():
            try:
                verify_folder(local, key)
            except CorruptCheckpoint as bad:
                bad.moved_to = str(self._quarantine_local(local, key))
                if self._fs is None:
                    raise
                # Only this node's mirror was damaged: the remote copy may be fine, so fetch it again.
            else:
                self._verified.add(key)
                self._used(local)
                return local
        if self._fs is None:
            raise FileNotFoundError(f"no stage-1 checkpoint {key} under {self.root}")
        import pyarrow.fs

        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self._ensure(local.parent)))
        try:
            pyarrow.fs.copy_files(f"{self._base}/checkpoints/{key}", str(staging), source_filesystem=self._fs,
                                  destination_filesystem=pyarrow.fs.LocalFileSystem())
            verify_folder(staging, key)  # before it becomes the mirror: a bad download is never published
        except BaseException as err:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(err, CorruptCheckpoint):
                err.moved_to = self._quarantine_remote(key)
            elif isinstance(err, FileNotFoundError):
                raise FileNotFoundError(f"no stage-1 checkpoint {key} under {self.root}") from None
            raise
        self._publish_local(staging, local)
        self._verified.add(key)
        self._used(local)
        self.evict(keep=key)
        return local

    # --- the node's cache of a remote root -----------------------------------------------------------------
    @staticmethod
    def _used(local: Path) -> None:
        """Marks a mirror as just used (its marker's time): eviction goes by it."""
        try:
            os.utime(local / MARKER)
        except OSError:
            pass

    def evict(self, keep: str | None = None, limit_bytes: int | None = None) -> list[str]:
        """A remote root's mirrors on this node, least recently used first, removed until the cache fits
        `limit_bytes` (default: XGRID_CACHE_LIMIT_GB); never `keep`. A local root is the store itself: nothing
        is evicted. Returns the keys removed."""
        if self._fs is None:
            return []
        limit = cache_limit_bytes() if limit_bytes is None else limit_bytes
        folder = self.local / "checkpoints"
        mirrors = []
        for path in folder.iterdir() if folder.is_dir() else ():
            if (path / MARKER).is_file():
                size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                mirrors.append(((path / MARKER).stat().st_mtime, path, size))
        total, removed = sum(size for *_, size in mirrors), []
        for _, path, size in sorted(mirrors, key=lambda m: m[0]):
            if total <= limit:
                break
            if path.name == keep:
                continue
            # Renamed away first (one step), so no reader ever sees a half-deleted mirror under the key.
            trash = path.with_name(f".evicted-{path.name}-{_stamp()}")
            try:
                os.rename(path, trash)
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)
            self._verified.discard(path.name)
            total -= size
            removed.append(path.name)
        return removed

    # --- writes --------------------------------------------------------------------------------------------
    def staging_dir(self, key: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self._ensure(self.local_path(key).parent)))

    def discard_staging(self, keys: list[str]) -> None:
        """Remove the half-written staging folders of `keys` (an interrupted stage 1 leaves them); committed
        checkpoints are untouched."""
        for key in keys:
            for staging in self.local_path(key).parent.glob(f".{key}-*"):
                shutil.rmtree(staging, ignore_errors=True)

    def commit(self, key: str, staging: Path) -> Path:
        write_manifest(staging)
        (staging / MARKER).write_text(key)  # last: a folder with a marker has its manifest
        if self._fs is not None and not self._upload(key, staging):
            shutil.rmtree(staging, ignore_errors=True)  # another writer's copy is the checkpoint: mirror theirs
            return self.fetch(key)
        final = self._publish_local(staging, self.local_path(key))
        self._verified.add(key)
        return final

    def _upload(self, key: str, staging: Path) -> bool:
        """Object stores have no atomic folder rename: the files go up one by one, the manifest and then the
        marker last, and nothing is uploaded over a key another writer already committed. Two writers that
        upload the same key at the very same time can still interleave their files; the manifest check of
        every fetch then finds the mix, quarantines it and the key is trained again (never loaded). False when
        the key was committed already."""
        import pyarrow.fs

        if self.has_remote(key):
            return False
        remote = f"{self._base}/checkpoints/{key}"
        self._fs.create_dir(remote, recursive=True)
        for path in sorted(staging.iterdir(), key=lambda p: (p.name == MARKER, p.name == MANIFEST)):
            pyarrow.fs.copy_files(str(path), f"{remote}/{path.name}",
                                  source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=self._fs)
        return True

    def has_remote(self, key: str) -> bool:
        import pyarrow.fs

        info = self._fs.get_file_info(f"{self._base}/checkpoints/{key}/{MARKER}")
        return info.type == pyarrow.fs.FileType.File

    # --- quarantine ----------------------------------------------------------------------------------------
    def _quarantine_local(self, folder: Path, key: str) -> Path:
        """Move a bad local copy (the checkpoint of a local root, or a remote root's mirror) out of the way, in
        one rename on the same filesystem. Another process that quarantined it first has done the job."""
        dest = self._ensure(self.local / QUARANTINE) / f"{key}-{_stamp()}"
        try:
            os.rename(folder, dest)
        except FileNotFoundError:
            pass
        self._verified.discard(key)
        return dest

    def _quarantine_remote(self, key: str) -> str:
        import pyarrow.fs

        src, dest = f"{self._base}/checkpoints/{key}", f"{self._base}/{QUARANTINE}/{key}-{_stamp()}"
        self._fs.create_dir(f"{self._base}/{QUARANTINE}", recursive=True)
        try:
            self._fs.move(src, dest)
        except (OSError, NotImplementedError):  # S3 and GCS cannot rename a folder: copy it, then delete it
            try:
                pyarrow.fs.copy_files(src, dest, source_filesystem=self._fs, destination_filesystem=self._fs)
            except (OSError, FileNotFoundError):
                pass
            self._fs.delete_dir(src)
        self._verified.discard(key)
        return f"{self.root.rstrip('/')}/{QUARANTINE}/{dest.rsplit('/', 1)[-1]}"

    @staticmethod
    def _publish_local(staging: Path, final: Path) -> Path:
        try:
            os.rename(staging, final)
        except OSError:  # someone else published the same key first: keep theirs, discard ours
            shutil.rmtree(staging, ignore_errors=True)
        return final

    @staticmethod
    def _ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

