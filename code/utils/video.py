"""Opening videos with PyAV and reading what the catalogue records about them.

Why a module of its own: every stage that touches a video file (ingest, VIDEO@SECONDS queries,
VideoRetrieval's query clips) must fail the same way on bad input: one VideoError line that says
what is wrong with which file, never a raw FFmpeg traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import VideoError
from .hashing import file_sha256

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .ts .m2ts .mts .mpg .mpeg .flv .wmv .3gp .ogv .vob .mxf".split()
)


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts read from the container before decoding."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float  # seconds, from the stream or the container; 0 when unknown
    start_time: float  # seconds; subtracted from every frame time (MPEG-TS streams do not start at 0)
    time_base: Fraction


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes: the identity of a video's content, whatever its path."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise VideoError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even-sized (width, height) with the long side at most ``max_side``, aspect kept."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def open_video(path: Path) -> av.container.InputContainer:
    """Open ``path`` for decoding, or raise VideoError saying why it is not a usable video."""
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if not path.is_file():
        raise VideoError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise VideoError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except PermissionError as exc:
        raise VideoError(f"{path}: permission denied") from exc
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({_ffmpeg_reason(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream (audio-only or data file)")
    fmt = container.format.name
    if fmt == "image2" or fmt.endswith("_pipe"):  # FFmpeg's still-image demuxers
        container.close()
        raise VideoError(f"{path}: a still image ({fmt}), not a video (Search.py finds where a picture comes from)")
    return container


def probe(container: av.container.InputContainer, path: Path) -> VideoInfo:
    """Container, codec, size, frame rate and duration of the first video stream."""
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if not ctx.width or not ctx.height:
        raise VideoError(f"{path}: video stream has no frame size (corrupt header)")
    tb = stream.time_base or Fraction(1, 1_000_000)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if stream.duration:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / 1_000_000
    else:
        duration = 0.0
    start = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    return VideoInfo(
        container=container.format.name,
        codec=ctx.name,
        width=int(ctx.width),
        height=int(ctx.height),
        fps=fps,
        duration=duration,
        start_time=start,
        time_base=tb,
    )


def _ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's own words without the file name it repeats."""
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__


def frames_between(path: Path, start: float, end: float, max_side: int) -> list[tuple[float, np.ndarray]]:
    """Decoded RGB frames (long side <= max_side) with times in [start, end] seconds: for refining a moment."""

    out: list[tuple[float, np.ndarray]] = []
    with open_video(path) as container:
        info = probe(container, path)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(info.time_base)
        target = int((max(0.0, start) + info.start_time) / tb)
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            w, h = scaled_size(info.width, info.height, max_side)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = frame.pts * tb - info.start_time
                if t > end:
                    break
                if t >= start:
                    out.append((t, frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")))
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: cannot decode {start:.1f}-{end:.1f} s ({_ffmpeg_reason(exc)})") from exc
    return out
