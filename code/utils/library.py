"""What the library holds, video by video: the listing List.py prints.

Read from the catalogue alone: the keyframes' ``embedded`` flags say what Milvus holds (Check.py
verifies that they agree), so a listing needs no Milvus, which Lite takes a second to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .catalogue import Catalogue, Video


@dataclass(frozen=True)
class Listed:
    """A catalogued video and how many of its keyframes are in Milvus."""

    video: Video
    embedded: int

    def as_dict(self) -> dict[str, object]:
        v = self.video
        return {"video_id": v.id, "path": v.path, "status": v.status, "duration": round(v.duration, 3),
                "keyframes": v.keyframe_count, "embedded": self.embedded, "container": v.container,
                "codec": v.codec, "width": v.width, "height": v.height, "fps": round(v.fps, 3),
                "size_bytes": v.size_bytes, "content_hash": v.content_hash, "added_utc": str(v.created_at)}


def list_videos(cat: Catalogue, ids: Sequence[int] = (), match: Sequence[str] = ()
                ) -> tuple[list[Listed], list[int]]:
    """The library's videos by id, whatever their status (an interrupted ingest or delete shows as
    such): those with one of ``ids`` or whose path contains one of ``match`` (case-insensitive), or
    every one when neither is given. Also returns the ids asked for that no video has."""
    every = cat.videos()
    wanted_ids, parts = set(ids), [m.lower() for m in match]
    videos = [v for v in every if v.id in wanted_ids or any(p in v.path.lower() for p in parts)] \
        if wanted_ids or parts else every
    embedded = cat.embedded_per_video()
    unknown = sorted(wanted_ids - {v.id for v in every})
    return [Listed(v, embedded.get(v.id, 0)) for v in videos], unknown
