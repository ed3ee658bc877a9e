"""Search: a picture in, ranked (video, moment, score, keyframe) out.

Steps per query:
1. cut flat borders; embed the image, its mirror (users send flipped frames) and five windows of it
   (four corners and the centre, for picture-in-picture and player screenshots);
2. fetch the nearest keyframes: many for the image and mirror, a few for each window;
3. verify the strongest candidates geometrically (ORB + RANSAC, utils.verify) against the stored
   keyframe images: verification picks the video, lets a window's score count only when the
   geometry confirms it (windows never turn an unrelated picture into a match), and the query laid
   onto each well-aligned keyframe picks the moment among look-alikes (a static shot) and scores
   the answer by how well the pixels agree: heavy edits keep that high, the same room with other
   content in it does not;
4. group by video (one answer per video) with the span of its neighbouring strong hits as
   ``from``/``to`` (as trace.moe does);
5. optionally (``search.refine``) refine the first answer's moment between keyframes by decoding
   the half second around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .catalogue import READY, Catalogue
from .config import Config
from .embedder import Embedder
from .errors import InputError
from .images import cut_borders, read_image
from .vectorstore import Hit, ModelInfo, VectorStore
from .verify import NO_ALIGNMENT, Alignment, Features, align, aligned_similarity, features, keyframe_features
from .video import VIDEO_EXTENSIONS, frames_between

SPAN_SCORE_DROP = 0.05  # hits this close to the best score count towards the matching span
WINDOW = 0.6  # side of the query windows, as a share of the query's sides
WINDOW_HITS = 10  # keyframes fetched per window view
REFINE_FRAMES = 8  # frames embedded when refining a moment
REFINE_MIN_GAP = 0.3  # keyframes closer than this on both sides already give the moment
BEST_VIDEO_CANDIDATES = 8  # keyframes of the leading video always verified (to pick its moment)
MOMENT_INLIER_SHARE = 0.5  # keyframes aligned with at least this share of the best's inliers compete for the moment
PIXEL_MARGIN = 0.01  # aligned-pixel agreements this close do not tell two keyframes apart
ORIENTATION_MARGIN = 0.03  # a mirrored view scoring within this of the other is verified too


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
    """The whole-picture views of a query: the border-cut image and its mirror."""
    core = cut_borders(rgb)
    return [core, np.ascontiguousarray(core[:, ::-1])]


def windows(core: np.ndarray) -> list[np.ndarray]:
    """Four corner windows and a centre window, each WINDOW of the image's sides."""
    h, w = core.shape[:2]
    wh, ww = max(1, int(h * WINDOW)), max(1, int(w * WINDOW))
    corners = [(0, 0), (0, w - ww), (h - wh, 0), (h - wh, w - ww), ((h - wh) // 2, (w - ww) // 2)]
    return [np.ascontiguousarray(core[y:y + wh, x:x + ww]) for y, x in corners]


@dataclass
class _Candidate:
    """One keyframe seen for a query: its best whole-picture score (as is / mirrored), best score over
    all views, inliers."""

    hit: Hit
    base: float = -1.0
    any_view: float = -1.0
    by_view: list[float] = field(default_factory=lambda: [-1.0, -1.0])
    alignment: Alignment = NO_ALIGNMENT
    view: int = 0  # the query view (0 as is, 1 mirrored) the alignment is of
    keyframe: Features | None = None
    pixels: float = -1.0  # agreement of the aligned pixels (utils.verify.aligned_similarity), once computed

    @property
    def inliers(self) -> int:
        return self.alignment.inliers

    def orientations(self) -> list[int]:
        """The query views (0 as is, 1 mirrored) worth verifying against this keyframe: the one that
        found it, both when they score alike or only a window found it. Halves the ORB work."""
        if self.base < 0:
            return [0, 1]
        return [v for v in (0, 1) if self.by_view[v] >= self.base - ORIENTATION_MARGIN]


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
        if not queries:
            return []
        top_k = top_k or self.cfg.search.top_k
        threshold = self.cfg.search.threshold if threshold is None else threshold
        verify = self.cfg.search.verify
        base_views = [query_views(rgb) for _, rgb in queries]
        win_views = [windows(b[0]) if verify else [] for b in base_views]
        flat = [v for b, w in zip(base_views, win_views) for v in b + w]
        vectors = self.embedder.embed(flat)
        per_query = [len(b) + len(w) for b, w in zip(base_views, win_views)]
        answers, pos = [], 0
        for (name, _), views, n in zip(queries, base_views, per_query):
            vecs = vectors[pos:pos + n]
            pos += n
            cands = self._candidates(vecs)
            query_feats = self._verify(cands, views) if verify else {}
            matches = self._rank(cands, top_k, threshold, query_feats)
            if matches and self.cfg.search.refine:
                self._refine(matches[0], vecs[:2])
            answers.append(Answer(name, matches))
        return answers

    def _candidates(self, vecs: np.ndarray) -> dict[int, _Candidate]:
        """Keyframe hits of all views of one query, keyed by keyframe id."""
        base = self.store.search(vecs[:2], self.cfg.search.candidates)
        wins = self.store.search(vecs[2:], WINDOW_HITS) if len(vecs) > 2 else []
        cands: dict[int, _Candidate] = {}
        for view, hits in enumerate(base + wins):
            for h in hits:
                c = cands.setdefault(h.id, _Candidate(h))
                c.any_view = max(c.any_view, h.score)
                if view < 2:
                    c.base = max(c.base, h.score)
                    c.by_view[view] = max(c.by_view[view], h.score)
        return cands

    def _verify(self, cands: dict[int, _Candidate], views: list[np.ndarray]) -> dict[int, Features]:
        """Align the strongest candidates and the leading video's keyframes with the query (ORB + RANSAC);
        returns the query features per view, for :meth:`_moment`."""
        query_feats: dict[int, Features] = {}
        by_any = sorted(cands.values(), key=lambda c: -c.any_view)[: self.cfg.search.verify_candidates]
        lead = max(cands.values(), key=lambda c: c.base).hit.video_id
        of_lead = sorted((c for c in cands.values() if c.hit.video_id == lead), key=lambda c: -c.base)
        chosen = {c.hit.id: c for c in by_any + of_lead[:BEST_VIDEO_CANDIDATES]}
        rows = self.cat.keyframes_by_id(list(chosen))
        for kid, c in chosen.items():
            if kid in rows:
                c.keyframe = keyframe_features(str(self.cfg.data_path / rows[kid].image_path))
                for v in c.orientations():
                    if v not in query_feats:
                        query_feats[v] = features(views[v])
                    found = align(query_feats[v], c.keyframe)
                    if found.inliers > c.inliers:
                        c.alignment, c.view = found, v
        return query_feats

    def _rank(self, cands: dict[int, _Candidate], top_k: int, threshold: float,
              query_feats: dict[int, Features]) -> list[Match]:
        """One answer per video: geometrically verified videos first, then by whole-picture score."""
        min_inliers = self.cfg.search.verify_min_inliers
        by_video: dict[int, list[_Candidate]] = {}
        for c in cands.values():
            by_video.setdefault(c.hit.video_id, []).append(c)
        scored = []
        for video_id, cs in by_video.items():
            most = max(c.inliers for c in cs)
            verified = self._moment(cs, most, query_feats) if most >= min_inliers else None
            if verified is not None and verified.inliers >= min_inliers:  # the moment's own keyframe verified
                # the score of a verified answer: the embedding's, or how well the aligned pixels agree when
                # higher (heavy edits lower the first, not the second; the same room with other content
                # in it lowers the second)
                score = max(verified.any_view, max(c.base for c in cs), verified.pixels)
                scored.append(((1, most), score, verified, cs))
            else:
                best = max(cs, key=lambda c: c.base)
                scored.append(((0, best.base), best.base, best, cs))
        scored.sort(key=lambda x: x[0], reverse=True)
        matches: list[Match] = []
        for _, score, top, cs in scored:
            if len(matches) == top_k:
                break
            if score < threshold:
                continue
            video = self.cat.video(top.hit.video_id)
            rows = self.cat.keyframes_by_id([top.hit.id])
            if video is None or video.status != READY or top.hit.id not in rows:
                continue  # vectors of a video being deleted, or drift: never answer with it
            lo, hi = self._span([c.hit for c in cs if c.base >= 0], top.hit, top.base)
            matches.append(Match(video.id, video.path, top.hit.timestamp, lo, hi, score, top.hit.id,
                                 str(self.cfg.data_path / rows[top.hit.id].image_path)))
        return matches

    def _moment(self, cs: list[_Candidate], most: int, query_feats: dict[int, Features]) -> _Candidate:
        """The keyframe of one verified video (``most`` inliers at best) that shows the query's moment.

        The best-aligned keyframe, except in a static shot, where several keyframes align about as
        well (the same background keypoints): there the query laid onto each of them decides, pixel
        by pixel (:func:`~utils.verify.aligned_similarity`), where the pixels differ at all; among
        keyframes the pixels cannot tell apart, the most inliers, then the embedding, decide."""
        alike = [c for c in cs if c.inliers >= MOMENT_INLIER_SHARE * most and c.keyframe is not None]
        for c in alike:
            c.pixels = aligned_similarity(query_feats[c.view], c.keyframe, c.alignment)
        top = max(c.pixels for c in alike)
        # pixels only decide where they differ: in a truly still shot more inliers mean the nearer frame
        return max((c for c in alike if c.pixels >= top - PIXEL_MARGIN), key=lambda c: (c.inliers, c.any_view))

    def _refine(self, match: Match, query_vecs: np.ndarray) -> None:
        """Move the best answer from its keyframe's time to the query's own moment.

        Keyframes are dense where the picture moves and up to ``keyframes.max_gap`` apart where it
        does not; where they are sparse, decode the frames nearer to this keyframe than to its
        neighbours and take the one whose embedding matches the query best. Only the first answer is
        refined: decoding is the slow part."""
        t = match.timestamp
        before, after = self.cat.neighbour_times(match.video_id, t)
        lo = t - (t - before) / 2 if before is not None else max(0.0, t - self.cfg.keyframes.max_gap / 2)
        hi = t + (after - t) / 2 if after is not None else t + self.cfg.keyframes.max_gap / 2
        if hi - t < REFINE_MIN_GAP / 2 and t - lo < REFINE_MIN_GAP / 2:
            return
        try:
            frames = frames_between(Path(match.video_path), lo, hi, self.cfg.keyframes.image_max_side)
        except InputError:
            return  # the video moved or is unreadable: the keyframe's time is the best we have
        if len(frames) > REFINE_FRAMES:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, REFINE_FRAMES).round().astype(int)]
        if not frames:
            return
        sims = (self.embedder.embed([cut_borders(f) for _, f in frames]) @ query_vecs.T).max(axis=1)
        best = int(np.argmax(sims))
        match.timestamp = float(frames[best][0])
        match.from_, match.to = min(match.from_, match.timestamp), max(match.to, match.timestamp)

    def _span(self, hits: list[Hit], top: Hit, top_score: float) -> tuple[float, float]:
        """The run of this video's strong hits around the answer, neighbours at most group_gap apart."""
        times = sorted(h.timestamp for h in hits if h.score >= top_score - SPAN_SCORE_DROP)
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
