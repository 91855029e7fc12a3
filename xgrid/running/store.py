"""Content-addressed stage-1 checkpoints: `<root>/checkpoints/<key>/` holds a save_pretrained folder.

The root is a local folder by default, or any pyarrow filesystem URI (`s3://bucket/prefix`, `gs://...`) that
every node of a cluster sees. Remote checkpoints are mirrored into a local cache folder before use.
A checkpoint appears atomically (written aside, then renamed or uploaded with its marker last), so a
crashed writer never leaves a half checkpoint that a later search would trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MARKER = "XGRID_COMPLETE"


def is_uri(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class CheckpointStore:
    def __init__(self, root: str | os.PathLike, local_cache: str | os.PathLike | None = None):
        self.root = str(root)
        if is_uri(self.root):
            import pyarrow.fs

            self._fs, self._base = pyarrow.fs.FileSystem.from_uri(self.root)
            self.local = Path(local_cache or Path(tempfile.gettempdir()) / "xgrid-cache")
        else:
            self._fs, self._base = None, None
            self.local = Path(self.root.removeprefix("file://")).absolute()

    # --- queries -------------------------------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        return self.local / "checkpoints" / key

    def has(self, key: str) -> bool:
        if (self.local_path(key) / MARKER).is_file():
            return True
        if self._fs is None:
            return False
        import pyarrow.fs

        info = self._fs.get_file_info(f"{self._base}/checkpoints/{key}/{MARKER}")
        return info.type == pyarrow.fs.FileType.File

    def fetch(self, key: str) -> Path:
        """A local folder holding the checkpoint (downloaded once from a remote root)."""
        local = self.local_path(key)
        if (local / MARKER).is_file():
            return local
        if self._fs is None:
            raise FileNotFoundError(f"no stage-1 checkpoint {key} under {self.root}")
        import pyarrow.fs

        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self._ensure(local.parent)))
        pyarrow.fs.copy_files(f"{self._base}/checkpoints/{key}", str(staging), source_filesystem=self._fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
        self._publish_local(staging, local)
        return local

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
        (staging / MARKER).write_text(key)
        if self._fs is not None:
            import pyarrow.fs

            remote = f"{self._base}/checkpoints/{key}"
            self._fs.create_dir(remote, recursive=True)
            for path in sorted(staging.iterdir(), key=lambda p: p.name == MARKER):  # marker last
                pyarrow.fs.copy_files(str(path), f"{remote}/{path.name}",
                                      source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=self._fs)
        return self._publish_local(staging, self.local_path(key))

    @staticmethod
    def _publish_local(staging: Path, final: Path) -> Path:
        try:
            os.rename(staging, final)
        except OSError:  # someone else published the same key: contents are equivalent, keep theirs
            shutil.rmtree(staging, ignore_errors=True)
        return final

    @staticmethod
    def _ensure(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path
