"""Keyframe images on disk.

Paths are derived from catalogue ids only (video id, keyframe sequence number), never from the
user's file names, so no name can collide with another video's or reach outside the data dir.
Videos are bucketed by thousands so no folder grows past a thousand entries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from .errors import P4VError

KEYFRAME_ROOT = "keyframes"
IMAGE_SUFFIX = ".jpg"  # a keyframe's image; other files beside it (its stored features) go with it


def video_dir_rel(video_id: int) -> str:
    return f"{KEYFRAME_ROOT}/{video_id // 1000:03d}/{video_id}"


def keyframe_rel(video_id: int, seq: int) -> str:
    """The keyframe image path relative to data_dir, as stored in the catalogue."""
    return f"{video_dir_rel(video_id)}/{seq:06d}{IMAGE_SUFFIX}"


def write_jpeg(data_dir: Path, rel: str, rgb: np.ndarray, quality: int) -> None:
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise P4VError(f"cannot encode keyframe image {rel}")
    path.write_bytes(buf.tobytes())


def count_video_files(data_dir: Path, video_id: int) -> int:
    """How many keyframe images a video has on disk."""
    d = data_dir / video_dir_rel(video_id)
    return sum(1 for p in d.iterdir() if p.is_file() and p.suffix == IMAGE_SUFFIX) if d.exists() else 0


def remove_video_dir(data_dir: Path, video_id: int) -> int:
    """Delete a video's keyframe images (and what is stored beside them); returns how many images were
    removed (0 when already gone)."""
    count = count_video_files(data_dir, video_id)
    d = data_dir / video_dir_rel(video_id)
    if d.exists():
        shutil.rmtree(d)
    return count


def keyframe_files(data_dir: Path) -> dict[int, set[str]]:
    """Every keyframe image on disk, by video id (for drift checks; not the files stored beside them)."""
    out: dict[int, set[str]] = {}
    root = data_dir / KEYFRAME_ROOT
    if not root.exists():
        return out
    for vdir in root.glob("*/*"):
        if vdir.is_dir() and vdir.name.isdigit():
            out[int(vdir.name)] = {f"{video_dir_rel(int(vdir.name))}/{p.name}" for p in vdir.iterdir()
                                   if p.is_file() and p.suffix == IMAGE_SUFFIX}
    return out
