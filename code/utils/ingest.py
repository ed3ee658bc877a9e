"""Ingest: video files in, keyframe images on disk and rows in the catalogue out.

One file at a time, each in its own all-or-nothing unit: a file that fails (corrupt, truncated,
not a video) leaves no row and no image behind, and the batch goes on. A run killed half way
leaves an ``ingesting`` row that the next run takes over and redoes (see catalogue.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from .catalogue import Catalogue, NewKeyframe, VideoMeta, owner_id
from .config import Config
from .errors import InputError, P4VError
from .keyframes import KeyframeExtractor
from .storage import keyframe_rel, remove_video_dir, write_jpeg
from .video import VIDEO_EXTENSIONS, content_hash

HEARTBEAT_S = 30.0


class KeyframeSink(Protocol):
    """Where keyframe pixels go besides disk while a video is decoded (e.g. the embedding model)."""

    def add(self, image: np.ndarray) -> None: ...

    def ready(self) -> None:
        """Called once a video is decoded, before its rows are committed: raise to fail the run
        with nothing of that video kept (e.g. the vector store could not be opened)."""

    def commit(self, video_id: int, ids: list[int], timestamps: list[float]) -> None: ...

    def discard(self) -> None: ...


@dataclass
class FileResult:
    """What happened to one input file: ``status`` is added, exists, duplicate, busy or failed."""

    path: str
    status: str
    video_id: int | None = None
    keyframes: int = 0
    duration: float = 0.0
    frames_decoded: int = 0
    message: str = ""


@dataclass
class IngestSummary:
    results: list[FileResult] = field(default_factory=list)
    wall_s: float = 0.0

    def count(self, *statuses: str) -> int:
        return sum(r.status in statuses for r in self.results)

    @property
    def keyframes(self) -> int:
        return sum(r.keyframes for r in self.results if r.status == "added")

    @property
    def video_seconds(self) -> float:
        return sum(r.duration for r in self.results if r.status == "added")

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.count("added"),
            "skipped": self.count("exists", "duplicate", "busy"),
            "failed": self.count("failed"),
            "keyframes": self.keyframes,
            "video_seconds": round(self.video_seconds, 3),
            "wall_seconds": round(self.wall_s, 3),
            "speed_x_realtime": round(self.video_seconds / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "keyframes_per_second": round(self.keyframes / self.wall_s, 2) if self.wall_s > 0 else 0.0,
            "files": [asdict(r) for r in self.results],
        }


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[FileResult]]:
    """Expand files and folders (recursively) into video files, in a stable order.

    A file named explicitly is taken whatever its extension (so a wrong file gets a clear error);
    inside folders only known video extensions are picked up. Symlinked folders are followed once
    (a symlink loop cannot recurse forever). Missing paths become failed results.
    """
    files: list[Path] = []
    failed: list[FileResult] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            files.append(real)

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            visited: set[Path] = set()
            for root, dirs, names in os.walk(p, followlinks=True):
                real_root = Path(root).resolve()
                if real_root in visited:
                    dirs[:] = []
                    continue
                visited.add(real_root)
                dirs.sort()
                for name in sorted(names):
                    if Path(name).suffix.lower() in VIDEO_EXTENSIONS and (Path(root) / name).is_file():
                        add(Path(root) / name)
        elif p.exists():
            add(p)
        else:
            failed.append(FileResult(str(p), "failed", message=f"{p}: no such file or directory"))
    return files, failed


class Ingester:
    """Runs the per-file ingest unit against one catalogue and data dir."""

    def __init__(self, cfg: Config, catalogue: Catalogue, sink: KeyframeSink | None = None):
        self.cfg = cfg
        self.cat = catalogue
        self.sink = sink
        self.data_dir = cfg.data_path
        self.owner = owner_id()

    def ingest_file(self, path: Path, on_frames: Callable[[int], None] | None = None) -> FileResult:
        """Ingest one file; never raises for bad input (the result says failed and why)."""
        try:
            return self._ingest(path, on_frames)
        except InputError as exc:
            return FileResult(str(path), "failed", message=str(exc))

    def _ingest(self, path: Path, on_frames: Callable[[int], None] | None) -> FileResult:
        digest = content_hash(path)
        known = self.cat.video_by_hash(digest)
        if known is not None and known.status == "ready":
            return self._known(path, known.id, known.path, known.keyframe_count)
        with KeyframeExtractor(path, self.cfg.keyframes) as ex:
            info = ex.info
            meta = VideoMeta(str(path), digest, path.stat().st_size, info.container, info.codec,
                             info.width, info.height, info.fps, info.duration)
            claim = self.cat.claim_video(meta, self.owner, self.cfg.catalogue.stale_after_s)
            if claim.state == "exists":
                return self._known(path, claim.video.id, claim.video.path, claim.video.keyframe_count)
            if claim.state == "busy":
                return FileResult(str(path), "busy", claim.video.id,
                                  message=f"{path}: being {claim.video.status} by {claim.video.owner or 'another run'}")
            vid = claim.video.id
            remove_video_dir(self.data_dir, vid)  # leftovers of an interrupted run
            try:
                rows = self._extract(ex, vid, on_frames)
                if self.sink is not None:
                    self.sink.ready()
                duration = info.duration or ex.decoded_duration
                ids = self.cat.finish_video(vid, self.owner, rows, duration)
            except BaseException:
                if self.sink is not None:
                    self.sink.discard()
                self._undo(vid)
                raise
            if self.sink is not None:
                self.sink.commit(vid, ids, [r.timestamp for r in rows])
            return FileResult(str(path), "added", vid, len(rows), duration, ex.frames_decoded,
                              "resumed an interrupted ingest" if claim.state == "resumed" else "")

    def _extract(self, ex: KeyframeExtractor, vid: int, on_frames: Callable[[int], None] | None) -> list[NewKeyframe]:
        rows: list[NewKeyframe] = []
        beat = time.monotonic()
        decoded = 0
        for kf in ex:
            rel = keyframe_rel(vid, kf.seq)
            write_jpeg(self.data_dir, rel, kf.image, self.cfg.keyframes.jpeg_quality)
            if self.sink is not None:
                self.sink.add(kf.image)
            rows.append(NewKeyframe(kf.seq, kf.frame_index, kf.pts, kf.timestamp, kf.kind, rel))
            if on_frames is not None:
                on_frames(ex.frames_decoded - decoded)
                decoded = ex.frames_decoded
            if time.monotonic() - beat > HEARTBEAT_S:
                self.cat.touch(vid, self.owner)
                beat = time.monotonic()
        if on_frames is not None:
            on_frames(ex.frames_decoded - decoded)
        return rows

    def _undo(self, vid: int) -> None:
        """Remove every trace of a failed ingest; if even that fails, the row stays 'ingesting' for a re-run."""
        remove_video_dir(self.data_dir, vid)
        try:
            self.cat.discard_video(vid)
        except P4VError:
            pass

    @staticmethod
    def _known(path: Path, vid: int, known_path: str, keyframes: int) -> FileResult:
        if Path(known_path) == path:
            return FileResult(str(path), "exists", vid, keyframes, message=f"already in the library as video {vid}")
        return FileResult(str(path), "duplicate", vid, keyframes,
                          message=f"same content as video {vid} ({known_path}); not ingested twice")


def shard(files: list[Path], index: int, count: int) -> list[Path]:
    """This worker's share of the files: a stable split by content-free position, so workers on many
    hosts given the same folder list take disjoint sets (the catalogue's unique hash guards overlaps)."""
    return [f for i, f in enumerate(files) if i % count == index]


def ingest(cfg: Config, catalogue: Catalogue, paths: Iterable[str | os.PathLike[str]],
           shard_of: tuple[int, int] | None = None,
           progress: Callable[[Iterable[Path], int], Iterator[Path]] | None = None,
           on_frames: Callable[[int], None] | None = None,
           on_result: Callable[[FileResult], None] | None = None,
           sink: KeyframeSink | None = None) -> IngestSummary:
    """Ingest every video under ``paths``; ``progress`` may wrap the file iterator (e.g. a tqdm bar),
    ``sink`` receives every keyframe (Create --embed embeds while decoding)."""
    start = time.perf_counter()
    files, failed = discover(paths)
    if shard_of is not None:
        files = shard(files, *shard_of)
    summary = IngestSummary(results=list(failed))
    for r in failed:
        if on_result:
            on_result(r)
    ingester = Ingester(cfg, catalogue, sink)
    for path in (progress(files, len(files)) if progress else files):
        result = ingester.ingest_file(path, on_frames)
        summary.results.append(result)
        if on_result:
            on_result(result)
    summary.wall_s = time.perf_counter() - start
    return summary

