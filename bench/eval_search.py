#!/usr/bin/env python3
"""Search accuracy harness (issue 7): edited screenshots in, top-1 / top-5 / moment / separation out,
for Picture4Video's Search and for a perceptual-hash peer, side by side.

    python bench/eval_search.py [--queries-per-edit N] [--seed S] [--out bench/results/eval_search.md]

What it does, in one run (about 2 minutes on a 2-core CPU at the defaults):
1. builds a throw-away library (temp data dir, SQLite catalogue, Milvus Lite) from the shared clips
   (../shared/data/videos), holding out
   - negatives: videos that are not in the library in any encode, among them the look-alikes of
     MANIFEST.md (mdn_pig: same table as the other mdn toys; intel_asl_book: same person and
     background as intel_asl_again), and
   - one member of each copy group (another encode / cut of footage that is in the library): its
     frames are positives, right when the library's copy is found;
2. takes frames at random times (mostly not keyframes; flat frames such as fades to black are
   skipped) of library videos and held-out copies (positives) and of the negatives, and makes
   query images with the edits of EDITS below;
3. asks Search (``Searcher.search``, one image per call, top-5, embedding and verification
   included in the latency; then the same queries again with no keyframe's features cached, for the
   latency of a one-off Search.py) and the pHash peer (imagehash.phash of I-frames plus one frame a second, top-1 by Hamming distance,
   score = 1 - distance/64) the same queries;
4. scores both (bench/eval_scoring.py) and prints / writes a markdown report.

Copy groups (which videos are the same footage) were checked by embedding frames of every pair:
the rabbit trio and the flower pair are encodes of one timeline; four of the five Big Buck Bunny
clips start at the film's first frame (bbb_0-30s, bbb_5s_1080p_hevc, bbb_trim_5s_180p_vp9,
mp4ff_bbb_10s) and overlap for their common length, while bbb_5s_720p_h264 is another part of the
film (no overlap). The two spiral clips are one synthetic graphic in two codecs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_scoring import ALL, Guess, Truth, percentile, right_answers, score_answers, side_by_side  # noqa: E402
from utils.video import open_video, probe  # noqa: E402

DEFAULT_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
DEFAULT_OUT = ROOT / "bench" / "results" / "eval_search.md"

NEGATIVES = ["mdn_pig_480p_h264.mp4", "intel_asl_book_480p_h264.mkv", "blend_modes_1080p_h264.mp4",
             "portrait_keyboard_1080x1920_h264.mp4"]
HELD_OUT_COPIES = ["mdn_rabbit_480p_vp8.webm", "mdn_flower_540p_vp8.webm", "bbb_trim_5s_180p_vp9.webm",
                   "spiral_1s_240p_mpeg4.avi"]
COPY_GROUPS: list[dict[str, float]] = [
    {"mdn_rabbit_480p_h264.mp4": 0.0, "mdn_rabbit_480p_vp8.webm": 0.0, "mdn_rabbit_240p_h264.mp4": 0.0},
    {"mdn_flower_540p_h264.mp4": 0.0, "mdn_flower_540p_vp8.webm": 0.0},
    {"bbb_0-30s_720p_vp8.webm": 0.0, "bbb_5s_1080p_hevc.ts": 0.0, "bbb_trim_5s_180p_vp9.webm": 0.0,
     "mp4ff_bbb_10s_240p_h264.mp4": 0.0},
    {"spiral_1s_240p_av1.avi": 0.0, "spiral_1s_240p_mpeg4.avi": 0.0},
]
MAX_SIDE = 960  # decoded frames are capped at this long side (memory); queries are made from them


# ---------------------------------------------------------------------------------------------
# edits: each takes (rgb, rng, ctx) and returns a new HxWx3 uint8 RGB image
# ---------------------------------------------------------------------------------------------
@dataclass
class EditContext:
    backgrounds: list[np.ndarray]  # frames of negatives, for picture-in-picture


def e_original(img, rng, ctx):
    return img


def e_crop(img, rng, ctx):
    h, w = img.shape[:2]
    area, aspect = rng.uniform(0.4, 0.8), rng.uniform(0.8, 1.25)
    cw = min(w, int(round(w * math.sqrt(area * aspect))))
    ch = min(h, int(round(h * area / (cw / w))))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return np.ascontiguousarray(img[y:y + ch, x:x + cw])


def e_jpeg(img, rng, ctx):
    h, w = img.shape[:2]
    s = min(1.0, max(rng.uniform(0.25, 0.5), 120 / min(h, w)))  # never under 120 px: a thumbnail, not a stamp
    small = cv2.resize(img, (max(16, int(w * s)), max(16, int(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, rng.randint(8, 22)])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def e_color(img, rng, ctx):
    x = img.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(0.3, 1.7)  # saturation
    x = (x - 128.0) * rng.uniform(0.6, 1.4) + 128.0 + rng.uniform(-40, 40)  # contrast, brightness
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)  # gamma
    return np.clip(x, 0, 255).astype(np.uint8)


def e_flip(img, rng, ctx):
    return np.ascontiguousarray(img[:, ::-1])


SUBTITLES = ["I told you we should have left earlier.", "Where are you going?", "[MUSIC PLAYING]",
             "This is not what it looks like!", "Episode 3 - The Return", "No, wait... listen to me.",
             "Subscribe for more!", "Ich habe keine Zeit.", "- Really?\n- Yes, really.", "LIVE  12:04"]


def _text_box(img, text, org, scale, thick, rng, alpha=0.65):
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = org
    pad = max(2, int(th * 0.35))
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - th - pad), min(img.shape[1], x + tw + pad), min(img.shape[0], y + base + pad)
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = (img[y0:y1, x0:x1].astype(np.float32) * (1 - alpha)).astype(np.uint8)
    cv2.putText(img, text, (x, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


def e_text(img, rng, ctx):
    out = img.copy()
    h, w = out.shape[:2]
    scale = max(0.35, h / 480 * rng.uniform(0.7, 1.1))
    thick = max(1, int(round(scale * 2)))
    lines = rng.choice(SUBTITLES).split("\n")
    if rng.random() < 0.5:
        lines = lines + [rng.choice(SUBTITLES).split("\n")[0]]
    th = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][1]
    y = h - int(h * 0.06)
    for line in reversed(lines):
        tw = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]
        _text_box(out, line, (max(2, (w - tw) // 2), y), scale, thick, rng)
        y -= int(th * 1.9)
    if rng.random() < 0.6:  # a channel logo / watermark in a corner
        s2 = scale * 0.7
        _text_box(out, rng.choice(["@clipz", "HD TV", "funnyvids.example", "REC"]),
                  (int(w * 0.03), int(h * 0.08)), s2, max(1, thick - 1), rng, alpha=0.4)
    return out


def e_player(img, rng, ctx):
    """A screenshot of a video player window: bars, title bar, controls with a progress bar."""
    h, w = img.shape[:2]
    aspect = rng.choice([16 / 9, 4 / 3, 21 / 9, 1.0, 16 / 10])
    cw = max(w, int(round(h * aspect)))
    ch = max(h, int(round(cw / aspect)))
    pad_frac = rng.uniform(0.0, 0.15)
    cw2, ch2 = int(cw * (1 + pad_frac)), int(ch * (1 + pad_frac))
    content = np.zeros((ch2, cw2, 3), np.uint8)  # letterbox / pillarbox bars
    y, x = (ch2 - h) // 2, (cw2 - w) // 2
    content[y:y + h, x:x + w] = img
    unit = max(12, ch2 // 18)
    title = np.full((unit, cw2, 3), rng.choice([(235, 235, 235), (45, 45, 48), (60, 63, 65)]), np.uint8)
    for i, col in enumerate([(255, 95, 86), (255, 189, 46), (39, 201, 63)]):
        cv2.circle(title, (unit // 2 + i * unit, unit // 2), max(3, unit // 4), col, -1, cv2.LINE_AA)
    tcol = (20, 20, 20) if title[0, 0, 0] > 128 else (220, 220, 220)
    cv2.putText(title, rng.choice(["movie.mp4 - Player", "VLC media player", "Watch - Browser"]),
                (unit * 4, int(unit * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, unit / 40, tcol, 1, cv2.LINE_AA)
    controls = np.full((int(unit * 1.6), cw2, 3), (18, 18, 18), np.uint8)
    bar_y = int(unit * 0.35)
    done = rng.uniform(0.05, 0.95)
    cv2.line(controls, (unit, bar_y), (cw2 - unit, bar_y), (90, 90, 90), max(2, unit // 8))
    px = int(unit + (cw2 - 2 * unit) * done)
    cv2.line(controls, (unit, bar_y), (px, bar_y), (230, 30, 30), max(2, unit // 8))
    cv2.circle(controls, (px, bar_y), max(3, unit // 5), (240, 240, 240), -1, cv2.LINE_AA)
    cv2.putText(controls, "01:%02d / 04:%02d" % (rng.randint(0, 59), rng.randint(0, 59)), (unit * 3, int(unit * 1.25)),
                cv2.FONT_HERSHEY_SIMPLEX, unit / 45, (230, 230, 230), 1, cv2.LINE_AA)
    tri = np.array([[unit, int(unit * 0.8)], [unit, int(unit * 1.4)], [int(unit * 1.6), int(unit * 1.1)]], np.int32)
    cv2.fillPoly(controls, [tri], (230, 230, 230))
    shot = np.concatenate([title, content, controls], axis=0)
    if rng.random() < 0.5:  # the desktop / browser page around the window
        m = int(unit * rng.uniform(0.5, 3))
        page = np.full((shot.shape[0] + 2 * m, shot.shape[1] + 2 * m, 3), rng.choice([(250, 250, 250), (32, 33, 36)]),
                       np.uint8)
        page[m:m + shot.shape[0], m:m + shot.shape[1]] = shot
        shot = page
    return shot


def e_rotate(img, rng, ctx):
    h, w = img.shape[:2]
    angle = rng.uniform(5, 10) * rng.choice([-1, 1])
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def e_blur_noise(img, rng, ctx):
    x = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.5, 3.0)).astype(np.float32)
    nrng = np.random.default_rng(rng.randint(0, 2**31))
    x += nrng.normal(0, rng.uniform(8, 16), x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def e_grey(img, rng, ctx):
    return cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def e_pip(img, rng, ctx):
    """The frame at 40-50 % of the width inside unrelated footage (a held-out video's frame)."""
    bg = rng.choice(ctx.backgrounds)
    bh, bw = bg.shape[:2]
    if bh > bw:  # portrait backgrounds: use a landscape part of it
        bg = bg[: int(bw * 9 / 16)]
        bh = bg.shape[0]
    out = bg.copy()
    h, w = img.shape[:2]
    iw = int(bw * rng.uniform(0.4, 0.5))
    ih = min(bh - 4, int(round(iw * h / w)))
    iw = int(round(ih * w / h))
    inset = cv2.resize(img, (iw, ih), interpolation=cv2.INTER_AREA)
    x, y = rng.randint(2, bw - iw - 2), rng.randint(2, bh - ih - 2)
    if rng.random() < 0.5:
        cv2.rectangle(out, (x - 2, y - 2), (x + iw + 1, y + ih + 1), (255, 255, 255), 2)
    out[y:y + ih, x:x + iw] = inset
    return out


COMBO_PARTS = [("crop", e_crop), ("rotate", e_rotate), ("flip", e_flip), ("color", e_color), ("grey", e_grey),
               ("blur_noise", e_blur_noise), ("text", e_text), ("player", e_player), ("jpeg", e_jpeg)]


def e_combo(img, rng, ctx):
    """Two or three of the other edits, applied in a natural order (crop first, JPEG last)."""
    picked = set(rng.sample([n for n, _ in COMBO_PARTS], rng.choice([2, 3])))
    for name, fn in COMBO_PARTS:
        if name in picked:
            img = fn(img, rng, ctx)
    return img


EDITS: dict[str, Callable] = {
    "original": e_original, "crop": e_crop, "jpeg": e_jpeg, "color": e_color, "flip": e_flip, "text": e_text,
    "player": e_player, "rotate": e_rotate, "blur_noise": e_blur_noise, "grey": e_grey, "pip": e_pip,
    "combo": e_combo,
}
EDIT_DOC = {
    "original": "untouched frame",
    "crop": "random crop of 40-80 % of the area",
    "jpeg": "downscaled to 25-50 % (short side at least 120 px), JPEG quality 8-22",
    "color": "brightness ±40, contrast 0.6-1.4, gamma 0.6-1.6, saturation 0.3-1.7",
    "flip": "horizontal mirror",
    "text": "1-3 subtitle lines in dark boxes (cv2.putText), often a corner watermark",
    "player": "player window: letter/pillarbox bars, title bar, controls with progress bar, sometimes a page margin",
    "rotate": "rotated ±5-10° about the centre, black corners",
    "blur_noise": "Gaussian blur σ 1.5-3 plus Gaussian noise σ 8-16",
    "grey": "greyscale",
    "pip": "the frame at 40-50 % width inside a held-out video's frame",
    "combo": "2-3 of crop/rotate/flip/color/grey/blur_noise/text/player/jpeg",
}


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------
def _scaled(w: int, h: int, max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h))
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


FLAT_STD = 8.0  # a frame whose pixels vary less than this (black fades, blank slates) shows no footage


def _flat(frame: av.VideoFrame) -> bool:
    """Whether a decoded frame is (nearly) uniform, judged cheaply on a subsample of its luma."""
    if frame.format.name.startswith(("yuv", "yuvj", "nv12")):
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: frame.height: 8, : frame.width: 8]
    else:
        y = frame.to_ndarray(format="gray")[::8, ::8]
    return float(y.std()) < FLAT_STD


def grab_frames(path: Path, times: list[float], max_side: int = MAX_SIDE) -> list[tuple[float, np.ndarray]]:
    """For each wanted time, the frame on screen then (its own time, RGB): one sequential decode.

    A flat frame (a fade to black, a blank slate) would match any other flat frame of any video, so
    it is never a query: the next frame that is not flat is taken instead (or, at the end of the
    clip, the last one that was not)."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    out: list[tuple[float, np.ndarray] | None] = [None] * len(times)
    pending: list[int] = []  # wanted times whose frame was flat: they take the next non-flat frame
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        start = s.start_time or 0
        w, h = _scaled(s.codec_context.width, s.codec_context.height, max_side)
        cache: dict[float, np.ndarray] = {}  # the last frame converted, by its time

        def rgb(item: tuple[float, av.VideoFrame, bool]) -> tuple[float, np.ndarray]:
            if item[0] not in cache:
                cache.clear()
                cache[item[0]] = item[1].to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
            return item[0], cache[item[0]]

        k = 0
        prev: tuple[float, av.VideoFrame, bool] | None = None  # time, frame, flat
        good: tuple[float, av.VideoFrame, bool] | None = None  # the last frame that was not flat
        for f in c.decode(s):
            if f.pts is None:
                continue
            ft = float((f.pts - start) * s.time_base)
            while k < len(order) and prev is not None and ft > times[order[k]]:
                if prev[2]:
                    pending.append(order[k])
                else:
                    out[order[k]] = rgb(prev)
                k += 1
            prev = (ft, f, _flat(f))
            if not prev[2]:
                good = prev
                for j in pending:
                    out[j] = rgb(prev)
                pending.clear()
            if k == len(order) and not pending:
                break
        while k < len(order) and prev is not None:
            if prev[2]:
                pending.append(order[k])
            else:
                out[order[k]] = rgb(prev)
            k += 1
        for j in pending:
            if good is not None:
                out[j] = rgb(good)
    if any(o is None for o in out):
        raise RuntimeError(f"{path}: no frame that is not flat")
    return out  # type: ignore[return-value]


SAME_PICTURE = 1.5  # grey levels: frames closer than this on average (64 x 36 thumbnails) show the same picture


def same_picture_misses(truths: list[Truth], answers: list[list[Guess]], videos: Path,
                        durations: dict[str, float]) -> tuple[int, int]:
    """(moment misses, of them the ones whose answered moment shows the same picture as the query's).

    A miss is a top-1-right answer more than 1 s from the query's moment. Where the video shows the
    very same picture at both times (a fixed camera on an empty room, test bars) no search by
    picture can tell them apart: counted apart, so that the misses a better search could avoid are
    known. The strict moment figure in the table is not changed by it."""
    misses = same = 0
    for truth, answer in zip(truths, answers):
        if not truth.positive or not answer:
            continue
        right = right_answers(truth.video, truth.time, COPY_GROUPS, durations)
        top = answer[0]
        if top.video not in right or abs(top.timestamp - right[top.video]) <= 1.0:
            continue
        misses += 1
        (_, a), (_, b) = grab_frames(videos / top.video, [right[top.video], top.timestamp], max_side=320)
        thumbs = [cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (64, 36), interpolation=cv2.INTER_AREA) for x in (a, b)]
        same += float(np.abs(thumbs[0].astype(np.float32) - thumbs[1]).mean()) < SAME_PICTURE
    return misses, same


def video_duration(path: Path) -> float:
    with open_video(path) as c:
        return probe(c, path).duration


# ---------------------------------------------------------------------------------------------
# the pHash peer
# ---------------------------------------------------------------------------------------------
class PHashPeer:
    """imagehash.phash over I-frames plus one frame a second of each library video."""

    def __init__(self) -> None:
        self.videos: list[str] = []
        self.times: list[float] = []
        self.bits: np.ndarray = np.zeros((0, 64), bool)

    @staticmethod
    def hash_bits(rgb: np.ndarray) -> np.ndarray:
        import imagehash
        from PIL import Image

        return np.asarray(imagehash.phash(Image.fromarray(rgb)).hash, bool).reshape(64)

    def add_video(self, path: Path) -> int:
        n = 0
        rows = []
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            start = s.start_time or 0
            w, h = _scaled(s.codec_context.width, s.codec_context.height, 480)
            next_t = 0.0
            for f in c.decode(s):
                if f.pts is None:
                    continue
                t = float((f.pts - start) * s.time_base)
                if f.key_frame or t >= next_t:
                    if t >= next_t:
                        next_t = math.floor(t) + 1.0
                    rows.append(self.hash_bits(f.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")))
                    self.videos.append(path.name)
                    self.times.append(t)
                    n += 1
        self.bits = np.concatenate([self.bits, np.asarray(rows, bool).reshape(-1, 64)])
        return n

    def search(self, rgb: np.ndarray, top_k: int = 5) -> list[Guess]:
        dist = (self.bits != self.hash_bits(rgb)).sum(axis=1)
        best: dict[str, tuple[int, float]] = {}
        for i in np.argsort(dist, kind="stable"):
            v = self.videos[i]
            if v not in best:
                best[v] = (int(dist[i]), self.times[i])
                if len(best) == top_k:
                    break
        return [Guess(v, t, 1.0 - d / 64.0) for v, (d, t) in best.items()]


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
@dataclass
class Query:
    truth: Truth
    image: np.ndarray
    is_keyframe: bool = False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plan_queries(rng: random.Random, sources: dict[str, float], negatives: dict[str, float], edits: list[str],
                 per_edit: int, neg_per_edit: int) -> list[tuple[str, bool, str, float]]:
    """(edit, positive, video, wanted time) for every query: videos uniformly, times uniformly."""
    plan = []
    pos_names, neg_names = sorted(sources), sorted(negatives)
    for edit in edits:
        for positive, names, n, durs in ((True, pos_names, per_edit, sources), (False, neg_names, neg_per_edit, negatives)):
            for i in range(n):
                v = rng.choice(names)
                d = durs[v]
                plan.append((edit, positive, v, rng.uniform(0.0, max(0.0, d - 0.05))))
    return plan


def build_queries(videos: Path, lib_durations: dict[str, float], kf_times: dict[str, list[float]], edits: list[str],
                  per_edit: int, neg_per_edit: int, seed: int) -> tuple[list[Query], dict[str, float]]:
    """The query images (deterministic for a seed) and the durations of every positive source."""
    sources = dict(lib_durations)
    for name in HELD_OUT_COPIES:
        sources[name] = video_duration(videos / name)
    negatives = {name: video_duration(videos / name) for name in NEGATIVES}
    rng = random.Random(seed)
    plan = plan_queries(rng, sources, negatives, edits, per_edit, neg_per_edit)
    bg_plan = [(v, rng.uniform(0, negatives[v] - 0.05)) for v in sorted(negatives) for _ in range(4)]
    wanted: dict[str, list[float]] = {}
    for _, _, v, t in plan:
        wanted.setdefault(v, []).append(t)
    for v, t in bg_plan:
        wanted.setdefault(v, []).append(t)
    grabbed = {v: grab_frames(videos / v, ts) for v, ts in wanted.items()}
    cursor = {v: 0 for v in wanted}

    def take(v: str) -> tuple[float, np.ndarray]:
        cursor[v] += 1
        return grabbed[v][cursor[v] - 1]

    plan_frames = [(e, pos, v, take(v)) for e, pos, v, _ in plan]
    ctx = EditContext(backgrounds=[take(v)[1] for v, _ in bg_plan])
    queries: list[Query] = []
    for qi, (edit, positive, v, (ft, frame)) in enumerate(plan_frames):
        erng = random.Random(f"{seed}/{edit}/{qi}")
        image = np.ascontiguousarray(EDITS[edit](frame, erng, ctx))
        is_kf = any(abs(ft - k) < 1e-3 for k in kf_times.get(v, []))
        queries.append(Query(Truth(edit, positive, v, ft), image, is_kf))
    return queries, sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries-per-edit", type=int, default=12, help="positive queries per edit (default 12)")
    ap.add_argument("--negatives-per-edit", type=int, default=None, help="negative queries per edit (default: half)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report (default bench/results/eval_search.md)")
    ap.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="the shared clips folder")
    ap.add_argument("--edits", default=",".join(EDITS), help="comma-separated subset of: " + ", ".join(EDITS))
    ap.add_argument("--data-dir", type=Path, default=None, help="library data dir (default: a temp dir, removed after)")
    ap.add_argument("--no-phash", action="store_true", help="skip the pHash peer")
    ap.add_argument("--dump", type=Path, default=None, help="also write every query's truth and answers as JSON")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config.yaml setting for this run, e.g. search.verify=false (repeatable)")
    args = ap.parse_args(argv)
    edits = [e.strip() for e in args.edits.split(",") if e.strip()]
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        ap.error(f"unknown edits {unknown}")
    neg_per_edit = args.negatives_per_edit if args.negatives_per_edit is not None else max(1, args.queries_per_edit // 2)
    if not args.videos.is_dir():
        ap.error(f"no clips at {args.videos} (see ../shared/data/MANIFEST.md)")

    import logging

    logging.basicConfig(level=logging.WARNING)
    from utils.catalogue import open_catalogue
    from utils.config import load_config
    from utils.embed_job import embed_library
    from utils.embedder import Embedder
    from utils.ingest import ingest
    from utils.search import Searcher
    from utils.vectorstore import VectorStore
    from utils.verify import features_file, forget_keyframes

    t_all = time.perf_counter()
    all_videos = sorted(p for p in args.videos.iterdir() if p.is_file() and not p.name.endswith(".md"))
    held = set(NEGATIVES) | set(HELD_OUT_COPIES)
    library = [p for p in all_videos if p.name not in held]
    tmp = tempfile.TemporaryDirectory(prefix="p4v-eval-") if args.data_dir is None else None
    data_dir = Path(tmp.name) if tmp else args.data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("P4V_")}
    env.update({"P4V_DATA_DIR": str(data_dir / "data"), "P4V_CATALOGUE__BACKEND": "sqlite", "P4V_MILVUS__URI": "milvus.db"})
    for setting in args.set:  # the config's own environment overrides: P4V_<SECTION>__<KEY>
        key, sep, value = setting.partition("=")
        if not sep or "." not in key:
            ap.error(f"--set {setting}: expected SECTION.KEY=VALUE")
        env["P4V_" + key.replace(".", "__").upper()] = value
    cfg = load_config(ROOT / "config.yaml", environ=env)

    log(f"library: {len(library)} videos -> {cfg.data_path}")
    with open_catalogue(cfg) as cat:
        t0 = time.perf_counter()
        summary = ingest(cfg, cat, library)
        ingest_s = time.perf_counter() - t0
        failed = [r for r in summary.results if r.status == "failed"]
        if failed:
            log(f"ingest failures: {[(r.path, r.message) for r in failed]}")
        t0 = time.perf_counter()
        embed_library(cfg, cat)
        embed_s = time.perf_counter() - t0
        n_kf = cat.counts()["keyframes"]
        n_stored = sum(features_file(cfg.data_path / k.image_path).is_file()
                       for v in cat.videos() for k in cat.video_keyframes(v.id))
        log(f"ingested {summary.count('added')} videos, {n_kf} keyframes in {ingest_s:.0f} s; embedded in {embed_s:.0f} s")
        lib_videos = {Path(v.path).name: v for v in cat.videos()}
        kf_times = {name: sorted(k.timestamp for k in cat.video_keyframes(v.id)) for name, v in lib_videos.items()}
        durations = {name: float(v.duration) for name, v in lib_videos.items()}

        # ---- queries --------------------------------------------------------------------
        t0 = time.perf_counter()
        queries, sources = build_queries(args.videos, durations, kf_times, edits, args.queries_per_edit, neg_per_edit,
                                         args.seed)
        make_s = time.perf_counter() - t0
        n_pos = sum(q.truth.positive for q in queries)
        kf_share = sum(q.is_keyframe for q in queries if q.truth.positive and q.truth.video in lib_videos) / max(
            1, sum(q.truth.positive and q.truth.video in lib_videos for q in queries))
        log(f"{len(queries)} queries ({n_pos} positive) made in {make_s:.0f} s; "
            f"{kf_share:.0%} of positive library frames are stored keyframes")

        # ---- ours -----------------------------------------------------------------------
        embedder = Embedder.from_config(cfg)
        ours_answers: list[list[Guess]] = []
        ours_ms: list[float] = []  # one query image, embedding and verification included
        with VectorStore(cfg) as store, Searcher(cfg, cat, store, embedder) as searcher:
            searcher.search([("warm-up", queries[0].image)], top_k=5, threshold=-1.0)
            t0 = time.perf_counter()
            for i, q in enumerate(queries):
                ts = time.perf_counter()
                (ranked,) = searcher.search([(f"q{i}", q.image)], top_k=5, threshold=-1.0)
                ours_ms.append((time.perf_counter() - ts) * 1000)
                guesses = [Guess(Path(m.video_path).name, m.timestamp, m.score, m.from_, m.to) for m in ranked.results]
                ours_answers.append(guesses[:5])
                if (i + 1) % 50 == 0:
                    log(f"ours: {i + 1}/{len(queries)} queries")
            ours_s = time.perf_counter() - t0
            log(f"ours: {len(queries)} queries in {ours_s:.0f} s")
            # as a one-off Search.py meets them: no stored keyframe's ORB features computed yet
            cold_ms: list[float] = []
            for i, q in enumerate(queries):
                forget_keyframes()
                ts = time.perf_counter()
                searcher.search([(f"q{i}", q.image)], top_k=5, threshold=-1.0)
                cold_ms.append((time.perf_counter() - ts) * 1000)
        log(f"ours, cold: {len(queries)} queries in {sum(cold_ms) / 1000:.0f} s")

    # ---- pHash peer -----------------------------------------------------------------------
    peer_answers: list[list[Guess]] = []
    peer_ms: list[float] = []
    peer_index_s = 0.0
    if not args.no_phash:
        t0 = time.perf_counter()
        peer = PHashPeer()
        for p in library:
            if p.name in lib_videos:
                peer.add_video(p)
        peer_index_s = time.perf_counter() - t0
        for q in queries:
            ts = time.perf_counter()
            peer_answers.append(peer.search(q.image))
            peer_ms.append((time.perf_counter() - ts) * 1000)
        log(f"pHash: {len(peer.videos)} hashes indexed in {peer_index_s:.0f} s")
    else:
        peer_answers = [[] for _ in queries]

    # ---- scores ---------------------------------------------------------------------------
    truths = [q.truth for q in queries]
    all_durations = {**sources}
    ours, ours_thr = score_answers(truths, ours_answers, COPY_GROUPS, all_durations)
    peer_scores, peer_thr = score_answers(truths, peer_answers, COPY_GROUPS, all_durations)
    table = side_by_side(ours, peer_scores)
    misses, same = same_picture_misses(truths, ours_answers, args.videos, all_durations)
    stored_note = (f"read from the files stored beside their images for {n_stored} of {n_kf}, "
                   "computed from the images for the rest")
    all_ours = ours.get(ALL)
    if all_ours is not None and all_ours.ts_errors:  # a span holds the moment whenever the moment is right: the rest are misses
        in_span_misses = round((all_ours.in_span - all_ours.ts_within) * len(all_ours.ts_errors))
        span_note = (f"it holds the query's moment (±1 s) for {all_ours.in_span:.2f} of the top-1-right answers "
                     f"({in_span_misses} of the {misses} misses); median span {all_ours.median_span:.1f} s")
    else:
        span_note = "no answer was right"
    pos_idx = [i for i, q in enumerate(queries) if q.truth.positive]
    neg_idx = [i for i, q in enumerate(queries) if not q.truth.positive]

    def lat(ms: list[float], idx: list[int] | None = None) -> str:
        v = [ms[i] for i in idx] if idx is not None else ms
        return f"p50 {percentile(v, 50):.0f} ms, p95 {percentile(v, 95):.0f} ms" if v else "-"

    sep_rows = ["| edit | ours kept | pHash kept |", "|---|---|---|"]
    for edit, s in ours.items():
        p = peer_scores.get(edit)
        f = lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"  # noqa: E731
        sep_rows.append(f"| {'**all**' if edit == ALL else edit} | {f(s.kept)} | {f(p.kept if p else None)} |")
    total_s = time.perf_counter() - t_all
    cmd = "python " + " ".join(shlex.quote(a) for a in ["bench/eval_search.py", *(argv if argv is not None else sys.argv[1:])])
    lat_edit = " · ".join(f"{e} {percentile([ours_ms[i] for i in pos_idx if queries[i].truth.edit == e], 50):.0f}"
                          for e in edits)
    report = f"""# Search evaluation: ours vs pHash

Command: `{cmd}`
Machine: {os.cpu_count()} CPU ({cpu_model()}), {platform.system()} {platform.release()}, Python {platform.python_version()};
run {time.strftime('%Y-%m-%d %H:%M')}, {total_s:.0f} s in all.
Library: {len(lib_videos)} videos, {n_kf} keyframes (ingest {ingest_s:.0f} s, embedding {embed_s:.0f} s with {embedder.name}).
Held out as negatives: {', '.join(NEGATIVES)}. Held-out copies (their queries must find the library's copy):
{', '.join(HELD_OUT_COPIES)}.
Queries: {n_pos} positive ({args.queries_per_edit} per edit), {len(queries) - n_pos} negative ({neg_per_edit} per edit), seed {args.seed};
frames at uniformly random times, {kf_share:.0%} of the library-video ones happen to be stored keyframes.

## Accuracy per edit (positive queries)

top-1 / top-5: a right video (itself or a copy of the same footage) first / among the first five.
ts≤1s: share of top-1-right answers whose moment is within 1 s of the query frame; med ts err: their median error.

{table}

Ours: {misses} top-1-right answers miss the moment by over 1 s; at {same} of them the video shows the same
picture as at the query's moment (frames within {SAME_PICTURE} grey levels on average on 64 x 36 thumbnails: a
fixed camera on a still scene, test bars), which no search by picture can tell apart.
What Search says there: each answer also has a span (`from`-`to`: the run of the video's keyframes scoring
about as well): {span_note}.

## Separation (one score threshold that rejects 95 % of the negatives' top-1 scores)

Threshold: ours {ours_thr:.3f} (cosine), pHash {peer_thr:.3f} (1 - Hamming/64). Share of top-1-right answers scoring above it:

{chr(10).join(sep_rows)}

## Latency per query image (one image per call)

- ours (`Searcher.search(top_k=5)`, verify {'on' if cfg.search.verify else 'off'}; embedding included; a Searcher held open, so stored keyframes' ORB features met by earlier queries are cached): {lat(ours_ms)} over all queries; positives {lat(ours_ms, pos_idx)}, negatives {lat(ours_ms, neg_idx)}
- ours p50 per edit (ms): {lat_edit}
- ours cold (the same queries again, the in-memory keyframe feature caches emptied before each, as a one-off `Search.py` meets them once the model and Milvus are open; keyframes' features {stored_note}): {lat(cold_ms)}; positives {lat(cold_ms, pos_idx)}, negatives {lat(cold_ms, neg_idx)}
- pHash (hash + brute-force Hamming over {len(getattr(peer, 'videos', [])) if not args.no_phash else 0} hashes): {lat(peer_ms)}; indexing {peer_index_s:.0f} s
- The machine is shared with other jobs: latencies may be inflated.

## Edits

{chr(10).join(f'- `{e}`: {EDIT_DOC[e]}' for e in edits)}
"""
    print(report)
    if args.dump:
        import json

        args.dump.write_text(json.dumps([
            {"edit": q.truth.edit, "positive": q.truth.positive, "video": q.truth.video, "time": q.truth.time,
             "keyframe": q.is_keyframe, "shape": list(q.image.shape), "ours_ms": ours_ms[i], "ours_cold_ms": cold_ms[i],
             "ours": [g.__dict__ for g in ours_answers[i]], "phash": [g.__dict__ for g in peer_answers[i]]}
            for i, q in enumerate(queries)], indent=0), encoding="utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    log(f"wrote {args.out} ({total_s:.0f} s)")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
