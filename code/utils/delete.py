"""Deleting videos from all three places they live: Milvus, the catalogue and the data dir.

Order, so that a failure half way never leaves anything orphaned or visible:
1. the video row is marked ``deleting`` (search stops answering with it at once);
2. its vectors are deleted from Milvus (by ``video_id``, so orphan vectors go too);
3. its keyframe images are removed;
4. its rows are deleted.
If step 2 or 3 fails (Milvus down, disk error), the row stays ``deleting`` and the next Delete run
finishes the job. Deleting an unknown or already deleted id is reported and harmless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .catalogue import Catalogue
from .config import Config
from .storage import count_video_files, remove_video_dir
from .vectorstore import VectorStore


@dataclass
class Deleted:
    """What one video id's delete removed; ``status`` is deleted, not_found or would_delete (dry run)."""

    video_id: int
    status: str
    path: str = ""
    keyframes: int = 0
    vectors: int = 0
    files: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def resolve_paths(cat: Catalogue, paths: Sequence[str]) -> list[int]:
    """Video ids of the library videos at these file paths (unknown paths are ignored)."""
    wanted = {str(Path(p).expanduser().resolve()) for p in paths}
    return [v.id for v in cat.videos() if v.path in wanted]


def delete_videos(cfg: Config, cat: Catalogue, store: VectorStore, video_ids: Sequence[int],
                  dry_run: bool = False) -> list[Deleted]:
    """Delete each video completely (or, with ``dry_run``, count what would go)."""
    out: list[Deleted] = []
    for vid in dict.fromkeys(video_ids):
        video = cat.video(vid)
        keyframes = cat.video_keyframes(vid)
        path = video.path if video else ""
        if dry_run:
            out.append(Deleted(vid, "would_delete" if video else "not_found", path, len(keyframes),
                               len(store.ids([vid])), count_video_files(cfg.data_path, vid)))
            continue
        if video is not None:
            cat.mark_deleting(vid)
        vectors = store.delete_videos([vid])
        files = remove_video_dir(cfg.data_path, vid)
        cat.discard_video(vid)
        status = "deleted" if video or vectors or files else "not_found"
        out.append(Deleted(vid, status, path, len(keyframes), vectors, files))
    return out
