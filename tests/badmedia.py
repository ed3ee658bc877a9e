"""Generators of bad inputs for the tests: each returns a path to a file a user might really pass."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import cv2
import numpy as np


def zero_bytes(d: Path) -> Path:
    p = d / "empty.mp4"
    p.write_bytes(b"")
    return p


def random_bytes(d: Path, name: str = "noise.mp4", size: int = 200_000) -> Path:
    p = d / name
    p.write_bytes(np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes())
    return p


def text_file(d: Path) -> Path:
    p = d / "notes.mkv"
    p.write_text("this is not a video\n" * 100)
    return p


def still_images(d: Path) -> list[Path]:
    """A PNG and a JPEG saved under video names (FFmpeg opens them as one-frame streams)."""
    picture = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = []
    for name, ext in (("screenshot.mp4", ".png"), ("photo.mkv", ".jpg")):
        p = d / name
        p.write_bytes(cv2.imencode(ext, picture)[1].tobytes())
        out.append(p)
    return out


def truncated(src: Path, d: Path, share: float) -> Path:
    """The first ``share`` of ``src``'s bytes, as a download cut short would leave it."""
    data = src.read_bytes()
    p = d / f"truncated_{int(share * 100)}_{src.name}"
    p.write_bytes(data[: int(len(data) * share)])
    return p


def corrupt_moov(src: Path, d: Path) -> Path:
    """``src`` with its 'moov' box header overwritten: the index of an mp4 is unreadable."""
    data = bytearray(src.read_bytes())
    i = data.find(b"moov")
    assert i > 0, "no moov box"
    data[i - 4: i + 64] = os.urandom(68)
    p = d / f"badmoov_{src.name}"
    p.write_bytes(bytes(data))
    return p


def audio_only(d: Path) -> Path:
    """A real 1-second AAC file in an mp4 container: valid media, no video stream."""
    p = d / "speech_only.mp4"
    with av.open(str(p), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "mono"
        samples = (np.sin(np.arange(44100) / 10.0) * 0.3).astype(np.float32)[None, :]
        for start in range(0, 44100, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = start
            frame.time_base = Fraction(1, 44100)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return p


def write_clip(p: Path, pictures: Iterable[np.ndarray], size: tuple[int, int], fps: int = 25,
               codec: str = "libx264", bit_rate: int = 0) -> Path:
    """A real video of RGB ``pictures`` (each ``size``, width x height), one frame each at ``fps``."""
    with av.open(str(p), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if bit_rate:
            stream.bit_rate = bit_rate
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return p


def synthetic_video(p: Path, seconds: float = 2.0, fps: int = 25, size: tuple[int, int] = (160, 120),
                    codec: str = "libx264", seed: int = 0) -> Path:
    """A small real video of moving coloured blocks (distinct per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    pictures = (np.kron(np.roll(base, i // 3, axis=1), np.ones((8, 8, 1), dtype=np.uint8))
                for i in range(int(seconds * fps)))
    return write_clip(p, pictures, size, fps, codec)
