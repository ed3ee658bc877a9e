"""Files under a folder, for scripts that take folders as well as files (Create: videos, Search: images)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Iterator


def files_under(folder: Path, extensions: Collection[str]) -> Iterator[Path]:
    """Files with one of ``extensions`` (lower case, with the dot) under ``folder``, recursively, in a
    stable order. Symlinked folders are followed once: a symlink loop cannot recurse forever."""
    visited: set[Path] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real_root = Path(root).resolve()
        if real_root in visited:
            dirs[:] = []
            continue
        visited.add(real_root)
        dirs.sort()
        for name in sorted(names):
            if Path(name).suffix.lower() in extensions and (Path(root) / name).is_file():
                yield Path(root) / name
