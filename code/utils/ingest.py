"""Ingest: video files in, keyframe images on disk and rows in the catalogue out.

One file at a time, each in its own all-or-nothing unit: a file that fails (corrupt, truncated,
not a video) leaves no row and no image behind, and the batch goes on. A run killed half way
leaves an ``ingesting`` row that the next run takes over and redoes (see catalogue.py).
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from .catalogue import Catalogue, NewKeyframe, VideoMeta, owner_id
from .config import Config
from .errors import InputError, P4VError
from .keyframes import Keyframe, KeyframeExtractor
from .paths import files_under
from .storage import keyframe_rel, remove_video_dir, write_jpeg
from .video import VIDEO_EXTENSIONS, content_hash

HEARTBEAT_S = 30.0
WRITE_AHEAD = 16  # keyframes decoded but not yet written at most: each holds a decoded frame


class KeyframeSink(Protocol):
    """Where keyframe pixels go besides disk while a video is decoded (e.g. the embedding model, and
    the vector store it fills)."""

    def add(self, image: np.ndarray) -> None: ...

    def end_video(self) -> Any:
        """The keyframes added since the last call, as one video's: a handle for commit or discard."""

    def drop_video(self) -> None:
        """Forget the keyframes added since the last end_video (their video failed)."""

    def opening(self) -> bool:
        """Whether the sink's store is still opening: the video's rows then wait, decoding goes on."""

    def ready(self) -> object:
        """Wait for the store: raise to fail the run with nothing uncommitted kept (e.g. the vector
        store could not be opened). Called before any video's rows are committed."""

    def commit(self, video: Any, video_id: int, ids: list[int], timestamps: list[float]) -> None: ...

    def discard(self, video: Any) -> None: ...


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
            for f in files_under(p, VIDEO_EXTENSIONS):
                add(f)
        elif p.exists():
            add(p)
        else:
            failed.append(FileResult(str(p), "failed", message=f"{p}: no such file or directory"))
    return files, failed


@dataclass
class _Decoded:
    """A video decoded, its keyframe images on disk, its rows not yet committed."""

    path: Path
    vid: int
    rows: list[NewKeyframe]
    duration: float
    frames_decoded: int
    resumed: bool
    batch: Any  # the sink's handle of its keyframes (KeyframeSink.end_video)


class Ingester:
    """Runs the per-file ingest unit against one catalogue and data dir."""

    def __init__(self, cfg: Config, catalogue: Catalogue, sink: KeyframeSink | None = None):
        self.cfg = cfg
        self.cat = catalogue
        self.sink = sink
        self.data_dir = cfg.data_path
        self.owner = owner_id()
        self._waiting: deque[_Decoded] = deque()

    def ingest_file(self, path: Path, on_frames: Callable[[int], None] | None = None) -> list[FileResult]:
        """Ingest one file; never raises for bad input (a result says failed and why).

        Returns the results this call settles: normally this file's. While the sink's store is still
        opening (Milvus Lite takes over a second), decoded videos wait with their rows uncommitted
        and decoding goes on; their results come with a later call or :meth:`finish`."""
        try:
            result = self._ingest(path, on_frames)
        except InputError as exc:
            result = FileResult(str(path), "failed", message=str(exc))
        return ([result] if result is not None else []) + self._settle(wait=False)

    def finish(self) -> list[FileResult]:
        """Commit the videos still waiting for the sink's store, once it is open."""
        return self._settle(wait=True)

    def abandon(self) -> None:
        """Undo the videos still waiting (the run is failing: ``ingest`` calls this on any error):
        no row, image or vector of them stays."""
        while self._waiting:
            video = self._waiting.pop()
            if self.sink is not None:
                self.sink.discard(video.batch)
            self._undo(video.vid)

    def _ingest(self, path: Path, on_frames: Callable[[int], None] | None) -> FileResult | None:
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
            except BaseException:
                if self.sink is not None:
                    self.sink.drop_video()
                self._undo(vid)
                raise
            self._waiting.append(_Decoded(path, vid, rows, info.duration or ex.decoded_duration, ex.frames_decoded,
                                          claim.state == "resumed", self.sink.end_video() if self.sink else None))
        return None

    def _settle(self, wait: bool) -> list[FileResult]:
        """Commit the waiting videos' rows (and hand their ids to the sink), in decoding order, once
        the sink's store is open; without waiting for it unless ``wait``."""
        if not self._waiting or (self.sink is not None and not wait and self.sink.opening()):
            return []
        if self.sink is not None:
            self.sink.ready()  # raises if the store cannot be opened: the caller abandons what waits
        results = []
        while self._waiting:
            video = self._waiting[0]  # removed once committed: a failure leaves it to abandon()
            ids = self.cat.finish_video(video.vid, self.owner, video.rows, video.duration)
            self._waiting.popleft()
            if self.sink is not None:
                self.sink.commit(video.batch, video.vid, ids, [r.timestamp for r in video.rows])
            results.append(FileResult(str(video.path), "added", video.vid, len(video.rows), video.duration,
                                      video.frames_decoded, "resumed an interrupted ingest" if video.resumed else ""))
        return results

    def _extract(self, ex: KeyframeExtractor, vid: int, on_frames: Callable[[int], None] | None) -> list[NewKeyframe]:
        """Decode the video and store its keyframes. Converting a keyframe to RGB, writing its JPEG
        and handing it to the sink run in a thread beside the decoder (FFmpeg and OpenCV release
        the GIL); all of them are written before this returns, and none is written after it raises."""
        rows: list[NewKeyframe] = []
        beat = time.monotonic()
        decoded = 0
        writing: deque[Future[None]] = deque()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="p4v-keyframe-writer")
        try:
            for kf in ex:
                rel = keyframe_rel(vid, kf.seq)
                writing.append(writer.submit(self._store, kf, rel))
                while writing and (writing[0].done() or len(writing) > WRITE_AHEAD):
                    writing.popleft().result()
                rows.append(NewKeyframe(kf.seq, kf.frame_index, kf.pts, kf.timestamp, kf.kind, rel))
                if on_frames is not None:
                    on_frames(ex.frames_decoded - decoded)
                    decoded = ex.frames_decoded
                if time.monotonic() - beat > HEARTBEAT_S:
                    self.cat.touch(vid, self.owner)
                    beat = time.monotonic()
            while writing:
                writing.popleft().result()
        finally:
            writer.shutdown(wait=True, cancel_futures=True)
        if on_frames is not None:
            on_frames(ex.frames_decoded - decoded)
        return rows

    def _store(self, kf: Keyframe, rel: str) -> None:
        """One keyframe's pixels to disk and to the sink (in the writer thread, in keyframe order)."""
        write_jpeg(self.data_dir, rel, kf.image, self.cfg.keyframes.jpeg_quality)
        if self.sink is not None:
            self.sink.add(kf.image, str(self.data_dir / rel))

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
    summary = IngestSummary()
    ingester = Ingester(cfg, catalogue, sink)
    order = {str(f): i for i, f in enumerate(files)}

    def report(results: list[FileResult]) -> None:
        for r in results:
            summary.results.append(r)
            if on_result:
                on_result(r)

    report(failed)
    try:
        for path in (progress(files, len(files)) if progress else files):
            report(ingester.ingest_file(path, on_frames))
        report(ingester.finish())
    except BaseException:
        ingester.abandon()
        raise
    # in the order of the files (a video waiting for the store is reported after later ones)
    summary.results.sort(key=lambda r: order.get(r.path, -1))
    summary.wall_s = time.perf_counter() - start
    return summary
