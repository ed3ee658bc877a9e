"""Choosing the frames of a video worth indexing.

I-frames alone are not enough: encoders space them from every frame (VP9 intra streams) to one in
ten seconds, so a screenshot taken between them would land far from any stored frame. In ``full``
mode every frame is decoded (cheaply: only a tiny luma thumbnail is looked at; with ``skip_nonref``
every frame another frame is predicted from, and with ``skip_loop_filter`` only keyframes deblocked)
and a frame is kept when it is
- an I-frame (``iframe``),
- the first frame after a hard cut, or the first frame that has drifted visibly from the last kept
  one (``scene``: mean absolute change of a 32x32 luma thumbnail against the previous frame, or
  against the last kept frame, at least ``min_gap`` after it), or
- needed so that no two kept frames are more than ``max_gap`` seconds apart (``gap``).
I-frame and scene candidates that look the same as the last kept frame (dHash distance) within
``max_gap`` are dropped as near-duplicates; gap frames never are, so coverage holds.

``iframes`` mode hands the decoder only the packets the container marks as keyframes, which is
several times faster but gives no coverage guarantee. Filtering packets beats the decoder's own
``skip_frame="NONKEY"``: the decoder never parses the packets it would drop, and FFmpeg's VP9 decoder
ignores NONKEY altogether (it decoded all 541 frames of a 9 s 720p60 clip for its 5 keyframes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .config import KeyframeConfig
from .errors import VideoError
from .video import VideoInfo, _ffmpeg_reason, open_video, probe, scaled_size

THUMB = 32
_PLANAR_8BIT = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"})


@dataclass
class Keyframe:
    """A kept frame: where it is in the video, why it was kept, and its RGB pixels.

    The pixels are converted when first asked for, not by the extractor: ingest converts and writes
    one keyframe in a thread while the next frames are decoded."""

    seq: int
    frame_index: int
    pts: int
    timestamp: float
    kind: str
    frame: av.VideoFrame
    max_side: int

    @cached_property
    def image(self) -> np.ndarray:
        """HxWx3 uint8 RGB, long side <= ``max_side``."""
        return to_rgb(self.frame, self.max_side)


@dataclass
class _Candidate:
    frame: av.VideoFrame
    index: int
    pts: int
    timestamp: float
    thumb: np.ndarray
    key: bool


def luma_thumb(frame: av.VideoFrame) -> np.ndarray:
    """A 32x32 float32 luma thumbnail, read straight from the Y plane (no colour conversion): the mean
    of 4x4 blocks of a 128x128 grid of pixels. It is taken of every decoded frame, so it is built
    from OpenCV's two fast paths (nearest sampling, an integer-ratio area average): half the time
    of one area resize of a subsampled frame, whose fractional ratios take OpenCV's slow path."""
    if frame.format.name in _PLANAR_8BIT:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
    else:
        y = frame.to_ndarray(format="gray")
    grid = cv2.resize(y, (THUMB * 4, THUMB * 4), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(grid, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def to_rgb(frame: av.VideoFrame, max_side: int) -> np.ndarray:
    """A decoded frame as HxWx3 uint8 RGB with its long side at most ``max_side`` (area-averaged)."""
    w, h = scaled_size(frame.width, frame.height, max_side)
    return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")


def dhash(thumb: np.ndarray) -> int:
    """64-bit difference hash of a thumbnail: robust to re-encoding, cheap to compare."""
    small = cv2.resize(thumb, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


class KeyframeExtractor:
    """Decode one video and yield its keyframes; ``info`` and ``decoded_duration`` describe the run."""

    def __init__(self, path: Path, cfg: KeyframeConfig):
        self.path = path
        self.cfg = cfg
        self.container = open_video(path)
        try:
            self.info: VideoInfo = probe(self.container, path)
        except BaseException:
            self.container.close()
            raise
        self.decoded_duration = 0.0
        self.frames_decoded = 0
        self.skipping = cfg.mode == "full" and cfg.skip_nonref  # see _all_frames

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "KeyframeExtractor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stream(self) -> av.VideoStream:
        """The video stream, set up for fast decoding."""
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        if self.cfg.decode_threads:
            stream.thread_count = self.cfg.decode_threads
        if self.cfg.skip_loop_filter:
            # deblocking frames other than keyframes costs a sixth of H.264's decode time, and what it
            # smooths (block edges) neither the thumbnails that pick keyframes nor the model sees
            stream.codec_context.options = {"skip_loop_filter": "nokey"}
        return stream

    def _frames(self) -> Iterator[_Candidate]:
        info = self.info
        fps = info.fps or 25.0
        tb = float(info.time_base)
        frames = self._all_frames() if self.cfg.mode == "full" else self._keyframes_only()
        try:
            for index, frame in enumerate(frames):
                if frame.pts is not None:
                    t = frame.pts * tb - info.start_time
                else:
                    t = index / fps
                t = max(0.0, t)
                self.frames_decoded += 1
                self.decoded_duration = max(self.decoded_duration, t + 1.0 / fps)
                pts = frame.pts if frame.pts is not None else int(round(t / tb))
                frame_index = index if self.cfg.mode == "full" and not self.skipping else int(round(t * fps))
                yield _Candidate(frame, frame_index, pts, t, luma_thumb(frame), bool(frame.key_frame))
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: corrupt video data after {self.decoded_duration:.1f} s "
                             f"({_ffmpeg_reason(exc)})") from exc

    def _all_frames(self) -> Iterator[av.VideoFrame]:
        """Full mode's frames, every one of them or, with ``skip_nonref``, all but those no other
        frame is predicted from (most B-frames): the decoder skips them (10-15 % of the shared clips'
        decode time), and no two frames left are more than a few frames apart, so coverage holds.
        Frames without timestamps are placed by counting them, which only works when none is
        skipped: a stream whose first frame has none is decoded whole, from a new opening."""
        stream = self._stream()
        if not self.skipping:
            yield from self.container.decode(stream)
            return
        stream.codec_context.skip_frame = "NONREF"
        frames = self.container.decode(stream)
        first = next(frames, None)
        if first is not None and first.pts is None:
            self.skipping = False
            stream = self._reopened()  # before self.container is read: it is a new one
            yield from self.container.decode(stream)
            return
        if first is not None:
            yield first
            yield from frames

    def _keyframes_only(self) -> Iterator[av.VideoFrame]:
        """The keyframes, decoded from the packets the container marks as keyframes.

        A container that marks none (NUT written without the flags, say) is read again, whole, with
        the decoder's ``skip_frame="NONKEY"``: slower, never empty-handed. Again from a new opening:
        such a file has no index to seek back in."""
        stream = self._stream()
        marked = unmarked = 0
        for packet in self.container.demux(stream):
            if packet.size == 0:  # end of the stream: flush the decoder's delayed frames
                yield from packet.decode()
            elif packet.is_keyframe:
                marked += 1
                yield from packet.decode()
            else:
                unmarked += 1
        if marked == 0 and unmarked > 0:
            stream = self._reopened()
            stream.codec_context.skip_frame = "NONKEY"
            yield from self.container.decode(stream)

    def _reopened(self) -> av.VideoStream:
        """The video stream of a new opening of the file, to decode it again from the start (a file
        without an index cannot be sought back in)."""
        self.container.close()
        self.container = open_video(self.path)
        return self._stream()

    def __iter__(self) -> Iterator[Keyframe]:
        cfg = self.cfg
        full = cfg.mode == "full"
        seq = 0
        last_t: float | None = None
        last_hash: int | None = None
        last_thumb: np.ndarray | None = None
        prev: _Candidate | None = None
        prev_kept = False

        def keep(c: _Candidate, kind: str) -> Keyframe:
            nonlocal seq, last_t, last_hash, last_thumb
            kf = Keyframe(seq, c.index, c.pts, round(c.timestamp, 6), kind, c.frame, cfg.image_max_side)
            seq += 1
            last_t, last_hash, last_thumb = c.timestamp, dhash(c.thumb), c.thumb
            return kf

        for cur in self._frames():
            kept_now = False
            # coverage: if this frame would leave a gap over max_gap, keep the one before it
            if full and last_t is not None and prev is not None and not prev_kept \
                    and cur.timestamp - last_t > cfg.max_gap + 1e-6:
                yield keep(prev, "gap")
            kind = None
            if cur.key:
                kind = "iframe"
            elif full and prev is not None and np.abs(cur.thumb - prev.thumb).mean() / 255.0 > cfg.scene_threshold:
                kind = "scene"
            if kind and last_t is not None and cur.timestamp - last_t <= cfg.max_gap \
                    and hamming(dhash(cur.thumb), last_hash or 0) <= cfg.dedup_distance:
                kind = None  # a near-duplicate of the frame just kept
            if kind is None and full and last_thumb is not None and last_t is not None \
                    and cur.timestamp - last_t >= cfg.min_gap \
                    and np.abs(cur.thumb - last_thumb).mean() / 255.0 > cfg.change_threshold:
                kind = "scene"  # gradual change (motion, a pose) since the last kept frame
            if kind is None and (last_t is None or (full and cur.timestamp - last_t > cfg.max_gap + 1e-6)):
                kind = "iframe" if cur.key else "gap"  # the first frame, or frames sparser than max_gap
            if kind is not None:
                yield keep(cur, kind)
                kept_now = True
            prev, prev_kept = cur, kept_now
        self._check_complete()

    def _check_complete(self) -> None:
        """A file that decodes to much less than its declared length is truncated: fail it, do not half-index it."""
        if self.frames_decoded == 0:
            raise VideoError(f"{self.path}: no decodable video frames (corrupt or truncated)")
        declared = self.info.duration
        if declared > 0 and self.cfg.mode == "full" \
                and self.decoded_duration < declared * self.cfg.min_decoded_share - 0.5:
            raise VideoError(f"{self.path}: truncated or corrupt: decoded {self.decoded_duration:.1f} s "
                             f"of {declared:.1f} s")
