"""Search: a picture in, ranked (video, moment, score, keyframe) out.

Steps per query: cut flat borders, embed the image and its mirror (users send flipped frames),
fetch the nearest keyframes for both views, keep the best score per keyframe, group the hits by
video (a video is one answer, however many of its keyframes matched), report the span of
neighbouring matching keyframes as ``from``/``to`` (as trace.moe does), and optionally refine the
moment by decoding the frames around the best keyframe and embedding a sample of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .catalogue import READY, Catalogue
from .config import Config
from .embedder import Embedder
from .errors import InputError, VideoError
from .images import cut_borders, read_image
from .vectorstore import Hit, ModelInfo, VectorStore
from .video import VIDEO_EXTENSIONS, frames_between

SPAN_SCORE_DROP = 0.05  # hits this close to the best score count towards the matching span
REFINE_FRAMES = 12  # frames embedded when refining a moment
REFINE_CANDIDATES = 3  # strong keyframe hits of one video whose surroundings are refined


@dataclass
class Match:
    """One video answering a query; field names are the JSON contract of Search.py --json."""

    video_id: int
    video_path: str
    timestamp: float
    from_: float
    to: float
    score: float
    keyframe_id: int
    keyframe_path: str

    def as_dict(self) -> dict[str, object]:
        return {"video_id": self.video_id, "video_path": self.video_path, "timestamp": round(self.timestamp, 3),
                "from": round(self.from_, 3), "to": round(self.to, 3), "score": round(self.score, 4),
                "keyframe_id": self.keyframe_id, "keyframe_path": self.keyframe_path}


@dataclass
class Answer:
    query: str
    results: list[Match] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"query": self.query, "results": [m.as_dict() for m in self.results]}


def load_query(ref: str, cfg: Config) -> np.ndarray:
    """A query as RGB: an image file, or ``VIDEO@SECONDS`` for the frame shown at that time of a video."""
    path, sep, at = ref.rpartition("@")
    if sep and Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        try:
            t = float(at)
        except ValueError:
            raise InputError(f"{ref}: VIDEO@SECONDS needs a number of seconds after '@'") from None
        frames = frames_between(Path(path), max(0.0, t - 0.5), t, max(cfg.keyframes.image_max_side, 1280))
        if not frames:
            raise InputError(f"{ref}: no frame at {t:.2f} s in {path}")
        return frames[-1][1]
    return read_image(ref, cfg.search.max_image_bytes, cfg.search.max_image_pixels)


def query_views(rgb: np.ndarray) -> list[np.ndarray]:
    """What is embedded for one query: the border-cut image and its mirror."""
    core = cut_borders(rgb)
    return [core, np.ascontiguousarray(core[:, ::-1])]


class Searcher:
    """Holds the model, the catalogue and Milvus open across many queries."""

    def __init__(self, cfg: Config, cat: Catalogue, store: VectorStore, embedder: Embedder):
        self.cfg = cfg
        self.cat = cat
        self.store = store
        self.embedder = embedder
        store.check(ModelInfo(embedder.name, embedder.sha256, embedder.dim))

    def search(self, queries: Sequence[tuple[str, np.ndarray]], top_k: int | None = None,
               threshold: float | None = None) -> list[Answer]:
        """Answer each (name, RGB image) query; results under ``threshold`` are dropped."""
        top_k = top_k or self.cfg.search.top_k
        threshold = self.cfg.search.threshold if threshold is None else threshold
        views = [query_views(rgb) for _, rgb in queries]
        flat = [v for vs in views for v in vs]
        vectors = self.embedder.embed(flat) if flat else np.zeros((0, self.embedder.dim), np.float32)
        hits = self.store.search(vectors, self.cfg.search.candidates) if flat else []
        answers = []
        pos = 0
        for (name, _), vs in zip(queries, views):
            n = len(vs)
            matches = self._rank(hits[pos:pos + n], vectors[pos:pos + n], top_k, threshold)
            answers.append(Answer(name, matches))
            pos += n
        return answers

    def _rank(self, view_hits: list[list[Hit]], view_vecs: np.ndarray, top_k: int, threshold: float) -> list[Match]:
        best: dict[int, tuple[Hit, int]] = {}  # keyframe id -> (best hit, view index)
        for vi, hits in enumerate(view_hits):
            for h in hits:
                if h.id not in best or h.score > best[h.id][0].score:
                    best[h.id] = (h, vi)
        by_video: dict[int, list[tuple[Hit, int]]] = {}
        for h, vi in best.values():
            by_video.setdefault(h.video_id, []).append((h, vi))
        ranked = sorted(by_video.items(), key=lambda kv: -max(h.score for h, _ in kv[1]))
        matches: list[Match] = []
        for video_id, vhits in ranked:
            if len(matches) == top_k:
                break
            top, vi = max(vhits, key=lambda x: x[0].score)
            if top.score < threshold:
                break
            video = self.cat.video(video_id)
            rows = self.cat.keyframes_by_id([top.id])
            if video is None or video.status != READY or top.id not in rows:
                continue  # vectors of a video being deleted, or drift: never answer with it
            lo, hi = self._span([h for h, _ in vhits], top)
            moment, score = top.timestamp, top.score
            if self.cfg.search.refine:
                moment, score = self._refine_best(Path(video.path), vhits, view_vecs, top)
            matches.append(Match(video_id, video.path, moment, min(lo, moment), max(hi, moment), score, top.id,
                                 str(self.cfg.data_path / rows[top.id].image_path)))
        matches.sort(key=lambda m: -m.score)
        return matches

    def _span(self, hits: list[Hit], top: Hit) -> tuple[float, float]:
        """The run of this video's strong hits around the best one, neighbours at most group_gap apart."""
        times = sorted(h.timestamp for h in hits if h.score >= top.score - SPAN_SCORE_DROP)
        lo = hi = top.timestamp
        gap = self.cfg.search.group_gap
        for t in sorted((t for t in times if t < top.timestamp), reverse=True):
            if lo - t > gap:
                break
            lo = t
        for t in (t for t in times if t > top.timestamp):
            if t - hi > gap:
                break
            hi = t
        return lo, hi

    def _refine_best(self, video_path: Path, vhits: list[tuple[Hit, int]], view_vecs: np.ndarray,
                     top: Hit) -> tuple[float, float]:
        """Refine around the few strongest, well separated keyframe hits: a video may return to a
        similar picture (a pose, a shot), and the best keyframe is then not always the right moment."""
        picks: list[tuple[Hit, int]] = []
        for h, vi in sorted(vhits, key=lambda x: -x[0].score):
            if h.score < top.score - SPAN_SCORE_DROP or len(picks) == REFINE_CANDIDATES:
                break
            if all(abs(h.timestamp - p.timestamp) > self.cfg.search.refine_window for p, _ in picks):
                picks.append((h, vi))
        best = (top.timestamp, top.score)
        for h, vi in picks:
            best = max(best, self._refine(video_path, h.timestamp, view_vecs[vi], h.timestamp, h.score),
                       key=lambda ts: ts[1])
        return best

    def _refine(self, video_path: Path, center: float, query_vec: np.ndarray, moment: float,
                score: float) -> tuple[float, float]:
        """Decode around a keyframe and take the best-matching frame's time (the query's moment)."""
        w = self.cfg.search.refine_window
        try:
            frames = frames_between(video_path, center - w, center + w, self.cfg.keyframes.image_max_side)
        except VideoError:
            return moment, score  # the video moved or is unreadable: the keyframe's time is the best we have
        if len(frames) > REFINE_FRAMES:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, REFINE_FRAMES).round().astype(int)]
        if not frames:
            return moment, score
        sims = self.embedder.embed([cut_borders(f) for _, f in frames]) @ query_vec
        i = int(np.argmax(sims))
        if sims[i] > score:
            return float(frames[i][0]), float(sims[i])
        return moment, score
