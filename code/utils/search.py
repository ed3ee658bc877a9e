"""Search: a picture in, ranked (video, moment, score, keyframe) out.

Steps per query:
1. cut flat borders; embed the image and its mirror (users send flipped frames);
2. fetch the nearest keyframes and verify the strongest geometrically (ORB + RANSAC, utils.verify)
   against the stored keyframe images: verification picks the video, and the query laid onto each
   well-aligned keyframe picks the moment among look-alikes (a static shot) and scores the answer by
   how well the pixels agree: heavy edits keep that high, the same room with other content in it
   does not;
3. only where no keyframe answered firmly (aligned, and scoring over the threshold), embed any inset
   picture framed by straight edges (utils.insets: picture-in-picture, a player on a page) and,
   where nothing aligned firmly at all, a 3 x 3 grid of windows of the query (a small player picture
   is mostly whole in one of them); fetch a few keyframes per window and verify each window's first
   hit against the window itself; a window's score counts only when the geometry confirms it
   (windows never turn an unrelated picture into a match), an inset's counts as the whole
   picture's does (it is a picture of its own, and a flat one gives ORB nothing to align);
4. group by video (one answer per video) with the span of its neighbouring strong hits as
   ``from``/``to`` (as trace.moe does); a first answer nothing verified takes the moment whose
   keyframe is laid out most like the query, among those the embedding scores about as well;
5. optionally (``search.refine``) refine the first answer's moment between keyframes by decoding
   the half second around it.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .catalogue import READY, Catalogue
from .config import Config
from .embedder import Embedder
from .errors import InputError
from .images import cut_borders, load_picture, searchable
from .insets import crop, inset_boxes
from .vectorstore import Hit, ModelInfo, VectorStore
from .verify import (NO_ALIGNMENT, QUERY_SIDE, Alignment, Features, align, aligned_similarity, features, keyframe_features,
                     keyframe_layout, layout, still_view_similarity)
from .video import frames_between

SPAN_SCORE_DROP = 0.05  # hits this close to the best score count towards the matching span
WINDOW = 0.6  # side of the query windows, as a share of the query's sides
WINDOW_STEPS = 3  # windows per axis: a 3 x 3 grid
WINDOW_HITS = 10  # keyframes fetched per window view
WINDOW_LEADS = 1  # a window's first hits are verified whatever their score, against the window itself
SETTLED_INLIERS = 20  # a keyframe aligned this well, and scoring over the threshold, answers the query: no windows needed
REFINE_FRAMES = 8  # frames embedded when refining a moment
REFINE_MIN_GAP = 0.3  # keyframes closer than this on both sides already give the moment
BEST_VIDEO_CANDIDATES = 8  # keyframes of the leading video always verified (to pick its moment)
RUNNER_UP_VIDEOS = 4  # when nothing verified: videos after the leading one whose best keyframes are aligned too
RUNNER_UP_KEYFRAMES = 3  # ...and how many of each one's keyframes
MOMENT_INLIER_SHARE = 0.5  # keyframes aligned with at least this share of the best's inliers compete for the moment
PIXEL_MARGIN = 0.02  # aligned-pixel agreements this close do not tell two keyframes apart
PIXEL_DOUBT = 0.7  # a verified video whose best aligned-pixel agreement is under this has its other orientation tried
LAYOUT_MARGIN = 0.06  # keyframes of a video nothing verified scoring this close to its best: the layout decides
ORIENTATION_MARGIN = 0.03  # a mirrored view scoring within this of the other is verified too
WORK_SIDE = math.ceil(QUERY_SIDE / WINDOW)  # a query's long side, about: its windows keep about QUERY_SIDE pixels for ORB
VERIFY_THREADS = min(4, os.cpu_count() or 1)  # keyframes verified at once (OpenCV releases the GIL)


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
    """A query as RGB (:func:`~utils.images.load_picture`: an image file or ``VIDEO@SECONDS``), refused
    (InputError) when nothing can be searched for in it (:func:`~utils.images.searchable`)."""
    return searchable(load_picture(ref, cfg), ref)


def query_views(rgb: np.ndarray) -> list[np.ndarray]:
    """The whole-picture views of a query: the border-cut image and its mirror, area-averaged down by
    the whole factor that brings its long side nearest WORK_SIDE (a whole factor costs a twentieth of
    any other). A full-HD screenshot was otherwise mirrored and downscaled again for every view,
    window and inset: a fifth of its query's time."""
    core = cut_borders(rgb)
    h, w = core.shape[:2]
    factor = round(max(h, w) / WORK_SIDE)
    if factor > 1:  # the last few rows and columns that do not fill a whole block are dropped
        core = cv2.resize(core[:h - h % factor, :w - w % factor], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return [core, cv2.flip(core, 1)]


def windows(core: np.ndarray) -> list[np.ndarray]:
    """Windows of the border-cut query where a picture-in-picture inset or a player's picture may be:
    WINDOW of the query's sides, on a WINDOW_STEPS x WINDOW_STEPS grid."""
    h, w = core.shape[:2]
    wh, ww = max(1, int(h * WINDOW)), max(1, int(w * WINDOW))
    ys = np.linspace(0, h - wh, WINDOW_STEPS).round().astype(int)
    xs = np.linspace(0, w - ww, WINDOW_STEPS).round().astype(int)
    return [np.ascontiguousarray(core[y:y + wh, x:x + ww]) for y in ys for x in xs]


@dataclass
class _Candidate:
    """One keyframe seen for a query: its best whole-picture score (as is / mirrored), best score over
    all views, the windows it led, inliers."""

    hit: Hit
    base: float = -1.0
    any_view: float = -1.0
    by_view: list[float] = field(default_factory=lambda: [-1.0, -1.0])
    led: list[int] = field(default_factory=list)  # query views (windows) that ranked it among their first
    alignment: Alignment = NO_ALIGNMENT
    view: int = 0  # the query view (0 as is, 1 mirrored, 2.. a window) the alignment is of
    keyframe: Features | None = None
    path: str = ""  # the stored keyframe image, once its features are read
    inset: float = -1.0  # best score from an inset view of the query (a picture framed inside it)
    pixels: float = -1.0  # agreement of the aligned pixels (utils.verify.aligned_similarity), once computed
    tried: set[int] = field(default_factory=set)  # query views already aligned with it

    @property
    def inliers(self) -> int:
        return self.alignment.inliers

    def orientations(self) -> list[int]:
        """The whole-picture views (0 as is, 1 mirrored) worth verifying against this keyframe, the
        better-scoring first: the one that found it, both when they score alike; the picture as is
        when only a window (cut from it) found it. Halves the ORB work."""
        if self.base < 0:
            return [0]
        alike = [v for v in (0, 1) if self.by_view[v] >= self.base - ORIENTATION_MARGIN]
        return sorted(alike, key=lambda v: -self.by_view[v])


@dataclass
class _Query:
    """One query in flight: its views (as is, mirrored, then any windows), their first two vectors, the
    keyframes they found, and the ORB features computed per view."""

    views: list[np.ndarray]
    vecs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    cands: dict[int, _Candidate] = field(default_factory=dict)
    feats: dict[int, Features] = field(default_factory=dict)
    feats_lock: threading.Lock = field(default_factory=threading.Lock)
    first_inset: int | None = None  # views from this one on are insets (utils.insets), once looked for

    def view_features(self, view: int) -> Features:
        """ORB features of one view, computed once however many verifying threads ask for them."""
        with self.feats_lock:
            if view not in self.feats:
                self.feats[view] = features(self.views[view])
            return self.feats[view]


def _by_video(cands: Iterable[_Candidate]) -> dict[int, list[_Candidate]]:
    """Candidates grouped by their video, each group and the videos in the order given."""
    groups: dict[int, list[_Candidate]] = {}
    for c in cands:
        groups.setdefault(c.hit.video_id, []).append(c)
    return groups


class Searcher:
    """Holds the model, the catalogue and Milvus open across many queries."""

    def __init__(self, cfg: Config, cat: Catalogue, store: VectorStore, embedder: Embedder):
        self.cfg = cfg
        self.cat = cat
        self.store = store
        self.embedder = embedder
        store.check(ModelInfo.of(embedder))
        self._pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="p4v-verify")

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the verifying threads (the catalogue, Milvus and the model belong to the caller)."""
        self._pool.shutdown(wait=True)

    def search(self, queries: Sequence[tuple[str, np.ndarray]], top_k: int | None = None,
               threshold: float | None = None) -> list[Answer]:
        """Answer each (name, RGB image) query; results under ``threshold`` are dropped.

        The whole picture and its mirror first; windows only for queries that no keyframe answers
        (:meth:`_settled`): they find an inset or a small player picture, and cost the most. A query
        nothing has verified yet then has the best keyframes of the videos after the leading one
        aligned too, and the leading video's in both orientations: heavy edits (grey, blur, noise
        together) can sink the right video's embedding scores under other videos', or mislead it on
        which way round the picture is, while ORB still aligns it firmly."""
        if not queries:
            return []
        top_k = top_k or self.cfg.search.top_k
        threshold = self.cfg.search.threshold if threshold is None else threshold
        states = [_Query(query_views(rgb)) for _, rgb in queries]
        base_vecs = self.embedder.embed([v for q in states for v in q.views])
        for i, q in enumerate(states):
            q.vecs = base_vecs[2 * i:2 * i + 2]
            self._add_hits(q, self.store.search(q.vecs, self.cfg.search.candidates), first_view=0)
        if self.cfg.search.verify:
            for q in states:
                self._verify(q)
            open_ = [q for q in states if not self._settled(q, self.cfg.search.threshold)]
            parts = [self._parts(q) for q in open_]
            if any(ws or ins for ws, ins in parts):
                hits = self.store.search(self.embedder.embed([v for ws, ins in parts for v in ws + ins]), WINDOW_HITS)
                pos = 0
                for q, (ws, ins) in zip(open_, parts):
                    q.first_inset = len(q.views) + len(ws)
                    self._add_hits(q, hits[pos:pos + len(ws) + len(ins)], first_view=len(q.views))
                    pos += len(ws) + len(ins)
                    q.views += ws + ins
                    self._verify(q)
            for q in states:
                if max((c.inliers for c in q.cands.values()), default=0) < self.cfg.search.verify_min_inliers:
                    self._verify(q, runners_up=True)
        answers = []
        for (name, _), q in zip(queries, states):
            matches = self._rank(q, top_k, threshold)
            if matches and self.cfg.search.refine:
                self._refine(matches[0], q.vecs)
            answers.append(Answer(name, matches))
        return answers

    @staticmethod
    def _parts(q: _Query) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The parts of an unsettled query worth embedding on their own, as (windows, insets): any inset
        framed by straight edges (utils.insets), and, unless the whole picture aligned firmly with
        something (then it is a look-alike background around an inset, or a player's picture scoring
        low), the 3 x 3 windows too."""
        core = q.views[0]
        insets = [crop(core, box) for box in inset_boxes(core)]
        if max((c.inliers for c in q.cands.values()), default=0) >= SETTLED_INLIERS:
            return [], insets
        return windows(core), insets

    @staticmethod
    def _settled(q: _Query, threshold: float) -> bool:
        """Whether the whole picture found its answer: a keyframe aligned firmly that also looks like the
        query. Firm alignment alone is not enough: the background of a picture-in-picture may be a
        look-alike of a library video (the same room, the same table), which aligns with it but scores
        low; only the windows and insets find the picture inside. The configured threshold, not a
        caller's own: asking for every answer (the eval's threshold -1) must not change the search."""
        return any(c.inliers >= SETTLED_INLIERS and c.base >= threshold for c in q.cands.values())

    @staticmethod
    def _add_hits(q: _Query, hits: list[list[Hit]], first_view: int) -> None:
        """Record the keyframe hits of query views ``first_view``, ``first_view + 1``... (0 as is,
        1 mirrored, 2.. windows and insets)."""
        for view, view_hits in enumerate(hits, start=first_view):
            for rank, h in enumerate(view_hits):
                c = q.cands.setdefault(h.id, _Candidate(h))
                c.any_view = max(c.any_view, h.score)
                if view < 2:
                    c.base = max(c.base, h.score)
                    c.by_view[view] = max(c.by_view[view], h.score)
                    continue
                if q.first_inset is not None and view >= q.first_inset:
                    c.inset = max(c.inset, h.score)
                if rank < WINDOW_LEADS:
                    c.led.append(view)

    def _verify(self, q: _Query, runners_up: bool = False) -> None:
        """Align with the query (ORB + RANSAC) its strongest candidates, the leading video's keyframes and
        each window's first hits; keeps the query's features per view in ``q.feats`` for :meth:`_moment`.
        Pairs already aligned are not aligned again (windows arrive in a second round).

        A window's first hits are aligned with the window itself when the whole picture does not align:
        a small inset (picture-in-picture) gets few of the whole picture's keypoints, and its
        embedding score is lower than the background's look-alikes, so only its window finds it.
        ``runners_up`` adds the RUNNER_UP_KEYFRAMES best keyframes of each of the RUNNER_UP_VIDEOS
        videos after the leading one (by embedding score), and aligns the leading video's keyframes in
        both orientations."""
        cands = q.cands
        if not cands:
            return

        def try_views(c: _Candidate, view_ids: list[int]) -> None:
            """Align the views in turn until one confirms the keyframe (the others would not add:
            ORB is not mirror-invariant, and a window is part of the picture that already aligned)."""
            for v in view_ids:
                if c.inliers >= self.cfg.search.verify_min_inliers:
                    break
                if v in c.tried:
                    continue
                c.tried.add(v)
                found = align(q.view_features(v), c.keyframe)
                if found.inliers > c.inliers:
                    c.alignment, c.view = found, v

        by_any = sorted(cands.values(), key=lambda c: -c.any_view)[: self.cfg.search.verify_candidates]
        lead = max(cands.values(), key=lambda c: c.base).hit.video_id
        of_lead = sorted((c for c in cands.values() if c.hit.video_id == lead), key=lambda c: -c.base)
        led = [c for c in cands.values() if c.led]
        chosen = {c.hit.id: c for c in by_any + of_lead[:BEST_VIDEO_CANDIDATES] + led}
        if runners_up:
            by_video = _by_video(sorted(cands.values(), key=lambda c: -c.base))
            for video_id in [v for v in by_video if v != lead][:RUNNER_UP_VIDEOS]:
                chosen.update((c.hit.id, c) for c in by_video[video_id][:RUNNER_UP_KEYFRAMES])
        rows = self.cat.keyframes_by_id([kid for kid, c in chosen.items() if c.keyframe is None])

        def confirmed() -> list[int]:
            """The whole-picture views (0 as is, 1 mirrored) that some keyframe has confirmed."""
            firm = self.cfg.search.verify_min_inliers
            return sorted({c.view for c in cands.values() if c.view < 2 and c.inliers >= firm})

        def check(c: _Candidate, orientation: list[int]) -> None:
            """Verify one keyframe: its own state only, so keyframes are verified in parallel. Once the
            query's ``orientation`` is known, only that one is tried."""
            if c.hit.id in rows:
                c.path = str(self.cfg.data_path / rows[c.hit.id].image_path)
                c.keyframe = keyframe_features(c.path)
            if c.keyframe is None:
                return
            views = c.orientations()
            try_views(c, ([v for v in views if v in orientation] or orientation) if orientation else views)
            if c.inliers < self.cfg.search.verify_min_inliers:
                try_views(c, c.led)

        # The best candidates first, in both orientations where the embedding cannot tell: a query is
        # one picture, mirrored or not, so once one keyframe confirms which, the others are aligned
        # that way only (the embedding scores a picture and its mirror alike: the mirrored view was
        # otherwise aligned, in vain, with a third of the keyframes verified for unmirrored queries).
        order = sorted(chosen.values(), key=lambda c: -c.any_view)
        first = [] if confirmed() else order[:VERIFY_THREADS]
        for _ in self._pool.map(lambda c: check(c, []), first):
            pass  # re-raises a verifying thread's error here
        orientation = confirmed()
        for _ in self._pool.map(lambda c: check(c, orientation), order[len(first):]):
            pass
        # The embedding barely tells a picture from its mirror, so a keyframe may have been tried in the
        # wrong orientation only; once the geometry has confirmed the query's orientation on one keyframe,
        # the others are tried that way too (the right moment of a flipped frame is often among them).
        # With nothing confirmed after every other round, heavy edits may have misled the embedding's
        # choice too: the leading video's keyframes are then tried both ways.
        orientation, pool = confirmed(), list(chosen.values())
        if runners_up and not orientation:
            orientation, pool = [0, 1], of_lead[:BEST_VIDEO_CANDIDATES]
        retry = [c for c in pool if c.keyframe is not None and not set(orientation) <= c.tried]
        for _ in self._pool.map(lambda c: try_views(c, orientation), retry):
            pass

    def _rank(self, q: _Query, top_k: int, threshold: float) -> list[Match]:
        """One answer per video: geometrically verified videos scoring over the configured threshold
        first, then the rest, each by its score (a picture-in-picture's inset may align with fewer
        keypoints than a look-alike of its background, but its pixels agree better).

        A verified video scoring under the threshold is a look-alike (the same table or room around an
        inset): it competes on its score alone. An inset's own embedding scoring over the threshold
        counts as much as the geometry: a picture framed by straight edges is a picture of its own,
        and a flat one (sky, a wall) gives ORB nothing to align, while the background around it may
        align with a look-alike just over the threshold. An arbitrary window's score counts only
        through the geometry."""
        min_inliers = self.cfg.search.verify_min_inliers
        scored = []
        for video_id, cs in _by_video(q.cands.values()).items():
            most = max(c.inliers for c in cs)
            verified = self._moment(q, cs, most) if most >= min_inliers else None
            if verified is not None:
                # the score of a verified answer: the embedding's, or how well the aligned pixels agree when
                # higher (heavy edits lower the first, not the second; the same room with other content
                # in it lowers the second)
                score = max(verified.any_view, max(c.base for c in cs), verified.pixels)
                scored.append(((score >= self.cfg.search.threshold, score), score, verified, cs))
            else:
                best = max(cs, key=lambda c: max(c.base, c.inset))
                score = max(best.base, best.inset)
                scored.append(((best.inset >= self.cfg.search.threshold, score), score, best, cs))
        scored.sort(key=lambda x: x[0], reverse=True)
        matches: list[Match] = []
        for _, score, top, cs in scored:
            if len(matches) == top_k:
                break
            if score < threshold:
                continue
            if not matches and top.inliers < min_inliers:  # the first answer's moment, as _refine's: reading keyframes costs
                top = self._by_layout(q, cs, top)
            video = self.cat.video(top.hit.video_id)
            rows = self.cat.keyframes_by_id([top.hit.id])
            if video is None or video.status != READY or top.hit.id not in rows:
                continue  # vectors of a video being deleted, or drift: never answer with it
            lo, hi = self._span([c.hit for c in cs if c.base >= 0], top.hit, max(top.base, top.inset))
            matches.append(Match(video.id, video.path, top.hit.timestamp, lo, hi, score, top.hit.id,
                                 str(self.cfg.data_path / rows[top.hit.id].image_path)))
        return matches

    def _by_layout(self, q: _Query, cs: list[_Candidate], best: _Candidate) -> _Candidate:
        """The moment of the first answer when nothing verified it: among its video's keyframes scoring
        within LAYOUT_MARGIN of the best, the one laid out most like the query
        (:func:`~utils.verify.layout`: where its edges are, at 32 x 18; 0.6 ms a query on average).

        Why: what ORB cannot align (heavy blur and noise, greyscale of a dark low-resolution picture,
        kinetic typography) the embedding still finds, but it tells the moments of one video apart
        poorly: a title's other words score as high. Where the words and outlines are is the picture's
        geometry, which these edits keep (by brightness instead, light sweeping over a title's
        background outweighed the words: two moments lost over three seeds). An answer found by an
        inset keeps its keyframe: the query's layout is not the inset's."""
        alike = [c for c in cs if c.base >= best.base - LAYOUT_MARGIN]
        if best.inset > best.base or len(alike) < 2:
            return best
        rows = self.cat.keyframes_by_id([c.hit.id for c in alike if not c.path])
        for c in alike:
            if c.hit.id in rows:
                c.path = str(self.cfg.data_path / rows[c.hit.id].image_path)
        views = [v for v in map(layout, q.views[:2]) if v is not None]

        def agreement(c: _Candidate) -> float:
            """With the query as is or mirrored, whichever agrees better: the embedding barely tells them apart."""
            keyframe = keyframe_layout(c.path) if c.path else None
            return max((float((v * keyframe).sum()) for v in views), default=-1.0) if keyframe is not None else -1.0
        return max(alike, key=lambda c: (agreement(c), c.base))

    def _moment(self, q: _Query, cs: list[_Candidate], most: int) -> _Candidate:
        """The keyframe of one verified video (``most`` inliers at best) that shows the query's moment,
        among its verified keyframes.

        The best-aligned keyframe, except in a still view, where several keyframes align about as well
        (the same background keypoints): there the query laid onto each of them decides, pixel by
        pixel (:func:`~utils.verify.aligned_similarity`), where the pixels differ at all. What the
        cells' median leaves tied is either one still view's keyframes that differ only in something
        small (a person in a fixed camera's view, a burnt-in clock), told apart by comparing the query
        with them where they differ (:func:`~utils.verify.still_view_similarity`); or neighbours in a
        pan or a slow change, where the most inliers, then the embedding, decide: the nearer frame
        shares more of the picture."""
        def contenders(most: int) -> list[_Candidate]:
            """The keyframes aligned about as well as the best (``most`` inliers), their pixels compared."""
            floor = max(MOMENT_INLIER_SHARE * most, self.cfg.search.verify_min_inliers)
            alike = [c for c in cs if c.inliers >= floor and c.keyframe is not None]
            for c in alike:
                c.pixels = aligned_similarity(q.feats[c.view], c.keyframe, c.alignment)
            return alike

        alike = contenders(most)
        if max(c.pixels for c in alike) < PIXEL_DOUBT:
            self._other_orientation(q, [c for c in cs if c.keyframe is not None and c.view < 2
                                        and c.inliers >= self.cfg.search.verify_min_inliers])
            alike = contenders(max(c.inliers for c in cs))
        top = max(c.pixels for c in alike)
        tied = [c for c in alike if c.pixels >= top - PIXEL_MARGIN]
        still = still_view_similarity([(q.feats[c.view], c.path, c.alignment) for c in tied]) if len(tied) > 1 else None
        if still is None:
            return max(tied, key=lambda c: (c.inliers, c.any_view))
        return max(zip(still, tied), key=lambda sc: (sc[0], sc[1].inliers))[1]

    def _other_orientation(self, q: _Query, cs: list[_Candidate]) -> None:
        """Align verified keyframes with the other whole-picture view too (mirrored if they were aligned
        as is, and the other way round), keeping it where the pixels then agree better."""
        def retry(c: _Candidate) -> None:
            other = 1 - c.view
            found = align(q.view_features(other), c.keyframe)
            if found.inliers >= self.cfg.search.verify_min_inliers:
                pixels = aligned_similarity(q.feats[other], c.keyframe, found)
                if pixels > aligned_similarity(q.feats[c.view], c.keyframe, c.alignment):
                    c.alignment, c.view = found, other
        for _ in self._pool.map(retry, cs):
            pass

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
