"""Damage done to real files by the fault tests: what a crashed writer, a full disk or bit rot leaves behind."""

import os
from pathlib import Path


def truncate(path: Path) -> None:
    """Cut the file to half its size (a copy or write that stopped midway)."""
    os.truncate(path, path.stat().st_size // 2)


def flip_middle_byte(path: Path) -> None:
    """Invert every bit of the byte in the middle of the file (silent corruption: the size stays the same)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
