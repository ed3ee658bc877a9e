"""VideoRetrieval: is this clip a copy of something in the library, and of which part?

A file hash only catches byte-identical files, so copies are found by content, in the way the
video copy detection literature does it (temporal Hough voting, e.g. Douze et al., "An image-based
approach to video copy detection with spatio-temporal post-filtering", 2010):

1. The query's keyframes are extracted as Create does, only denser (``query_max_gap``): the
   library holds a frame at least every second, so a query frame every half second is never far
   from a library keyframe of the same moment, and the time offset is measured more finely.
2. Each frame is embedded as the library's keyframes are (flat borders cut, so letter-boxing
   added or removed by a copy does not matter), mirrored too (flipped copies are common), and any
   inset picture framed by straight edges on its own (utils.insets: a reaction video shows the
   copied video in a box over other footage, which the whole frame's embedding barely sees); the
   ``per_frame_k`` nearest library keyframes of every view are fetched from Milvus. Flat
   frames (black, white, a solid title card) are skipped: they match every video's fades and say
   nothing about where a clip comes from.
3. Every (query frame, library keyframe) hit votes for its video and its time offset
   ``video_time - query_time``. A copy, whatever its frame rate, dropped frames or trims, keeps one
   offset, so its votes pile up in one bin; chance look-alikes scatter.
4. Inside each strong (video, offset) bin the hits are chained monotonically in time (a weighted
   longest increasing subsequence), which drops stray hits and gives the aligned segment; a gap of
   more than ``max_gap`` seconds without aligned frames ends a segment, so a clip made of a library
   segment and unrelated footage reports only the library segment.
5. A segment needs temporal support: its query frames must land on several distinct, non-flat
   library keyframes (Create keeps one at least every ``keyframes.max_gap``), so a still
   look-alike or a black frame that attracts a run of query frames is no copy.
6. The copy score is the lowest of three means over the aligned pairs (``verify``): the
   similarity of the whole pictures, of five regions (four corners, centre) and of the centre
   alone, computed from the query frames and the stored keyframe images. A copy agrees in all three whatever was done to
   it; the same room with another person in it (the look-alikes in MANIFEST.md) fails the
   centre, a merely similar-looking picture fails the regions. Greyscale query frames are
   compared with greyscale library frames.
7. A segment that passes must also align geometrically: ORB + RANSAC (utils.verify, as Search
   verifies) aligns at least ``min_aligned_pairs`` of its verification pairs. A copy shows its
   source's pictures moved, scaled or recoloured at most; another toy on the same table, or pages
   of text against a film's end credits, pass the embedding's tests (0.46-0.62) but do not align.

A file with the same content hash as a library video is answered at once, without decoding
(``others``: it is compared with the other library videos instead).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .catalogue import READY, Catalogue, Video
from .config import Config
from .embedder import Embedder
from .errors import InputError
from .images import cut_borders, luma_spread
from .insets import Box, crop, inset_boxes
from .keyframes import KeyframeExtractor
from .vectorstore import ModelInfo, VectorStore
from .verify import align, features, keyframe_features
from .video import content_hash

# query views: flat borders cut (as library keyframes are embedded), flipped, insets (2, 3..)
CORE, MIRROR, INSET = 0, 1, 2
FLAT_STD = 8.0  # a frame whose luma standard deviation is under this is flat (fade, blank, solid card)
GREY_CHROMA = 6.0  # a frame whose mean max-min channel spread is under this has no colour
REGION = 0.6  # verification regions: four corners and the centre, each this share of each side
JPEG_QUALITY = 90
SEARCH_BATCH = 64  # query views embedded and searched together
EXPLAINED_MARGIN = 0.1  # a match this much worse than one on the same part of the clip is a look-alike
PREFILTER_SLACK = 0.05  # segments whose hit similarity is this far under the threshold are not verified


@dataclass(frozen=True)
class QueryFrame:
    """A query keyframe; its pixels are kept JPEG-compressed so that long clips fit in memory."""

    index: int
    time: float
    kind: str
    jpeg: bytes
    flat: bool  # uninformative (fade, blank): not searched
    grey: bool  # no colour: compared with greyscale library frames
    insets: tuple[Box, ...] = ()  # inset pictures in the border-cut frame (utils.insets)

    def rgb(self) -> np.ndarray:
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def view(self, view: int) -> np.ndarray:
        """The picture one of this frame's views showed the model (see :func:`frame_views`)."""
        return dict(frame_views(cut_borders(self.rgb()), view == MIRROR, self.insets))[view]


@dataclass(frozen=True)
class FrameHit:
    """One candidate correspondence: query frame ``q`` looks like library keyframe ``keyframe_id``."""

    q: int
    query_time: float
    keyframe_id: int
    video_id: int
    video_time: float
    score: float
    view: int = CORE

    @property
    def offset(self) -> float:
        return self.video_time - self.query_time


@dataclass
class Segment:
    """A monotone chain of hits of one video at one time offset."""

    video_id: int
    offset: float
    pairs: list[FrameHit]

    @property
    def similarity(self) -> float:
        return float(np.mean([p.score for p in self.pairs])) if self.pairs else 0.0


@dataclass
class CopyMatch:
    """One library video (segment) the query copies; the field names are VideoRetrieval's JSON contract."""

    video_id: int
    video_path: str
    score: float
    query_start: float
    query_end: float
    video_start: float
    video_end: float
    frames: int
    pairs: list[FrameHit] = field(default_factory=list, repr=False)
    exact: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"video_id": self.video_id, "video_path": self.video_path, "score": round(self.score, 4),
                "query_start": round(self.query_start, 3), "query_end": round(self.query_end, 3),
                "video_start": round(self.video_start, 3), "video_end": round(self.video_end, 3),
                "frames": self.frames}


@dataclass
class CopyAnswer:
    query: str
    is_copy: bool
    matches: list[CopyMatch]
    duration: float = 0.0
    frames: list[QueryFrame] = field(default_factory=list, repr=False)
    library_video_id: int | None = None  # the clip's own id when its bytes are a library video

    def as_dict(self) -> dict[str, object]:
        return {"query": self.query, "is_copy": self.is_copy, "library_video_id": self.library_video_id,
                "matches": [m.as_dict() for m in self.matches]}


@dataclass(frozen=True)
class DuplicatePair:
    """Two library videos one of which copies (part of) the other: ``a`` has the lower id."""

    a: int
    a_path: str
    a_start: float
    a_end: float
    b: int
    b_path: str
    b_start: float
    b_end: float
    score: float


def duplicate_pairs(answers: Sequence[CopyAnswer]) -> list[DuplicatePair]:
    """The library's near-duplicates, each pair once, best first, from answers of library videos
    checked against the others: a pair is usually found from both sides (and more than once when
    several segments match), with the better score kept."""
    best: dict[tuple[int, int], DuplicatePair] = {}
    for ans in answers:
        if ans.library_video_id is None:
            continue
        for m in ans.matches:
            if m.video_id == ans.library_video_id:
                continue
            sides = sorted([(ans.library_video_id, ans.query, m.query_start, m.query_end),
                            (m.video_id, m.video_path, m.video_start, m.video_end)])
            pair = DuplicatePair(*sides[0], *sides[1], m.score)
            key = (pair.a, pair.b)
            if key not in best or pair.score > best[key].score:
                best[key] = pair
    return sorted(best.values(), key=lambda p: (-p.score, p.a, p.b))


# -- temporal alignment (pure functions: hits in, segments out) -------------------------------------

def vote_offsets(hits: Sequence[FrameHit], tolerance: float, max_peaks: int) -> list[tuple[float, float]]:
    """The strongest time offsets of one video's hits, as (offset, votes), best first.

    Offsets are binned at half the tolerance; a bin's votes are, summed over query frames, each
    frame's best score within +-tolerance of the bin. Counting a frame once per bin matters: a
    static shot matches several neighbouring keyframes, and would otherwise outvote a real copy.
    Peaks closer than twice the tolerance to a stronger one are the same peak. Sparse (sorting,
    no offset x frame grid), so an hour-long query against an hour-long video costs no more
    memory than its hits.
    """
    if not hits:
        return []
    width = tolerance / 2.0
    reach = 2  # bins either side: +-tolerance
    q = np.array([h.q for h in hits], dtype=np.int64)
    offsets = np.array([h.offset for h in hits])
    score = np.array([h.score for h in hits])
    lo = float(offsets.min())
    shifts = np.arange(-reach, reach + 1)
    bins = (np.floor((offsets - lo) / width).astype(np.int64)[:, None] + shifts).ravel()
    frames = np.repeat(q, len(shifts))
    scores = np.repeat(score, len(shifts))
    key = bins * (int(q.max()) + 1) + frames  # one key per (bin, query frame)
    order = np.lexsort((-scores, key))  # by key, best score first
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    best_bins, best_scores = bins[order][first], scores[order][first]
    uniq, inverse = np.unique(best_bins, return_inverse=True)
    votes = np.bincount(inverse, weights=best_scores)
    peaks: list[tuple[float, float]] = []
    for i in np.argsort(-votes, kind="stable"):
        if len(peaks) == max_peaks:
            break
        center = lo + (uniq[i] + 0.5) * width
        if all(abs(center - c) > 2 * tolerance for c, _ in peaks):
            peaks.append((center, float(votes[i])))
    return peaks


def monotone_chains(hits: Sequence[FrameHit], max_gap: float, floor: float,
                    max_chains: int = 3) -> list[list[FrameHit]]:
    """Split hits of one offset bin into time-ordered chains, best (highest total weight) first.

    A chain takes each query frame at most once, with query times increasing and library times not
    decreasing (the query is sampled more densely than the library, so two query frames may share
    a library keyframe), and no two consecutive links more than ``max_gap`` seconds apart in query
    time. Links weigh ``score - floor``, so strong hits decide the chain and weak ones only extend it.
    A weighted longest-increasing-subsequence; predecessors are looked for only within ``max_gap``.
    """
    pool = sorted(hits, key=lambda h: (h.query_time, h.video_time, -h.score))
    chains: list[list[FrameHit]] = []
    while pool and len(chains) < max_chains:
        n = len(pool)
        tq = np.array([h.query_time for h in pool])
        tv = np.array([h.video_time for h in pool])
        w = np.array([h.score - floor + 1e-3 for h in pool])
        first = np.searchsorted(tq, tq - max_gap, side="left")
        best = w.copy()
        back = np.full(n, -1)
        for j in range(1, n):
            i0 = int(first[j])
            if i0 >= j:
                continue
            ok = (tq[i0:j] < tq[j]) & (tv[i0:j] <= tv[j] + 1e-6)
            if ok.any():
                cand = np.where(ok, best[i0:j], -np.inf)
                i = int(np.argmax(cand))
                if cand[i] + w[j] > best[j]:
                    best[j], back[j] = cand[i] + w[j], i0 + i
        j = int(np.argmax(best))
        chain = []
        while j >= 0:
            chain.append(pool[j])
            j = int(back[j])
        chain.reverse()
        chains.append(chain)
        used_q = {h.q for h in chain}
        lo_t, hi_t = chain[0].query_time, chain[-1].query_time
        # what is left of this bin outside the chain's span may be another copy of the same part
        pool = [h for h in pool if h.q not in used_q and not (lo_t <= h.query_time <= hi_t)]
    return chains


def find_segments(hits: Iterable[FrameHit], tolerance: float, max_gap: float, min_frames: int,
                  floor: float, max_peaks: int = 3) -> list[Segment]:
    """Aligned segments of every video in ``hits``, strongest first, at least ``min_frames`` long."""
    by_video: dict[int, list[FrameHit]] = {}
    for h in hits:
        by_video.setdefault(h.video_id, []).append(h)
    out: list[Segment] = []
    for video_id, vhits in by_video.items():
        taken: list[tuple[float, float]] = []  # query spans already claimed by a stronger segment
        for peak, _ in vote_offsets(vhits, tolerance, max_peaks):
            center = recentre(vhits, peak, tolerance)
            in_bin = [h for h in vhits if abs(h.offset - center) <= tolerance]
            for chain in monotone_chains(in_bin, max_gap, floor):
                if len(chain) < min_frames:
                    continue
                span = (chain[0].query_time, chain[-1].query_time)
                if any(_overlap(span, t) > 0.5 for t in taken):
                    continue
                taken.append(span)
                out.append(Segment(video_id, robust_offset(chain), chain))
    out.sort(key=lambda s: (-s.similarity * len(s.pairs)))
    return out


def recentre(hits: Sequence[FrameHit], center: float, tolerance: float, rounds: int = 2) -> float:
    """Move a vote peak to the median offset of each query frame's best hit around it.

    A still shot gives a flat-topped peak (every nearby offset gets the same votes) whose first
    bin wins the tie; the frames' own best hits sit around the true offset instead.
    """
    for _ in range(rounds):
        best: dict[int, FrameHit] = {}
        for h in hits:
            if abs(h.offset - center) <= tolerance and (h.q not in best or h.score > best[h.q].score):
                best[h.q] = h
        if not best:
            break
        center = float(np.median([h.offset for h in best.values()]))
    return center


def robust_offset(chain: Sequence[FrameHit]) -> float:
    """The segment's time offset: median over library keyframes of the offset to their best query frame.

    The best-scoring query frame of a library keyframe is the one nearest in time, so its offset
    errs by at most half the query sampling gap; the median shrugs off the odd wrong pairing.
    """
    best: dict[int, FrameHit] = {}
    for h in chain:
        if h.keyframe_id not in best or h.score > best[h.keyframe_id].score:
            best[h.keyframe_id] = h
    return float(np.median([h.offset for h in best.values()]))


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Share of the shorter span covered by the other (spans of one point count as 0.1 s)."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    shorter = max(min(a[1] - a[0], b[1] - b[0]), 0.1)
    return max(0.0, inter) / shorter


# -- views and regions ------------------------------------------------------------------------------

def frame_views(core: np.ndarray, mirror: bool, insets: Sequence[Box] = ()) -> list[tuple[int, np.ndarray]]:
    """What is embedded for one query frame, from its border-cut ``core`` (Create embeds keyframes
    border-cut too, so bars a copy added or removed do not count): the core, with ``mirror`` the core
    flipped, and the crop of each inset box of the core."""
    views = [(CORE, core)]
    if mirror:
        views.append((MIRROR, cv2.flip(core, 1)))
    views += [(INSET + i, crop(core, box)) for i, box in enumerate(insets)]
    return views


def crops(rgb: np.ndarray) -> list[np.ndarray]:
    """What verification compares: the whole picture, four overlapping corner regions, the centre region."""
    h, w = rgb.shape[:2]
    rh, rw = max(1, int(h * REGION)), max(1, int(w * REGION))
    ys, xs = (0, h - rh), (0, w - rw)
    out = [rgb] + [rgb[y:y + rh, x:x + rw] for y in ys for x in xs]
    out.append(rgb[(h - rh) // 2:(h - rh) // 2 + rh, (w - rw) // 2:(w - rw) // 2 + rw])
    return out


def _thumb(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA)


def _is_flat(rgb: np.ndarray) -> bool:
    """A picture with (almost) nothing in it: a fade to black, a blank or solid-colour frame."""
    return luma_spread(rgb) < FLAT_STD


def _is_grey(rgb: np.ndarray) -> bool:
    """A picture without colour (a black-and-white film, a greyscale copy)."""
    small = _thumb(rgb).astype(np.int16)
    return float((small.max(axis=2) - small.min(axis=2)).mean()) < GREY_CHROMA


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2))


# -- the detector -----------------------------------------------------------------------------------

class CopyDetector:
    """Holds the model, the catalogue and Milvus open across many query clips."""

    def __init__(self, cfg: Config, cat: Catalogue, store: VectorStore, embedder: Embedder):
        self.cfg = cfg
        self.r = cfg.retrieval
        self.cat = cat
        self.store = store
        self.embedder = embedder
        store.check(ModelInfo.of(embedder))
        self._videos: dict[int, Video | None] = {}
        self._flat: dict[int, bool] = {}  # library keyframe id -> its image is flat
        self._paths: dict[int, str] = {}  # library keyframe id -> image path under data_dir
        self._lib_regions: dict[tuple[int, bool], np.ndarray | None] = {}  # (keyframe, grey) -> regions
        self._query_regions: dict[tuple[int, int, bool], np.ndarray] = {}  # (frame, view, grey) -> regions

    def detect(self, path: str | Path, threshold: float | None = None, keep_frames: bool = True,
               on_frames: Callable[[int], None] | None = None, others: bool = False) -> CopyAnswer:
        """Answer one query clip. Raises :class:`InputError` (VideoError) when it is not a usable video.

        ``keep_frames``: return the query's keyframes with the answer (for a report); about 30 kB
        each, two a second of clip. ``on_frames(n)`` reports decoding progress. A clip whose bytes
        are a library video is that video, found by its hash without decoding; with ``others`` it is
        compared with every other library video instead: which ones copy it, or which it copies
        (re-encodes, trims, excerpts of it within the library).
        """
        threshold = self.r.threshold if threshold is None else threshold
        p = Path(path)
        exact = self._exact(p)
        itself = exact.video_id if exact is not None else None
        if exact is not None and not others:
            return CopyAnswer(str(path), True, [exact], exact.query_end, library_video_id=itself)
        frames, hits, duration = self._read(p, on_frames, () if itself is None else (itself,))
        usable = sum(not f.flat for f in frames)
        min_frames = max(1, min(self.r.min_frames, usable))
        segments = find_segments(hits, self.r.offset_tolerance, self.r.max_gap, min_frames,
                                 self.r.min_similarity, self.r.max_peaks)
        self._query_regions.clear()  # frame indices are per query
        matches: list[CopyMatch] = []
        for seg in segments:
            if seg.similarity < threshold - PREFILTER_SLACK and not any(frames[p.q].grey for p in seg.pairs):
                continue  # far under the threshold already (colour against colour): not worth verifying
            video = self._video(seg.video_id)
            if video is None or video.status != READY:
                continue  # vectors of a video being deleted: never answer with it
            score = self._verify(seg, frames)
            if score is None or score < threshold or (self.r.verify and not self._geometry_agrees(seg, frames)):
                continue
            matches.append(self._match(seg, video, score, frames, duration))
        matches = explain_away(matches)
        return CopyAnswer(str(path), bool(matches), matches[:self.r.max_matches], duration,
                          frames if keep_frames else [], library_video_id=itself)

    # -- steps --------------------------------------------------------------------------------
    def _exact(self, path: Path) -> CopyMatch | None:
        """Same bytes as a ready library video: a copy of all of it, known without decoding a frame."""
        if not path.is_file():
            return None  # let the decoder say what is wrong with it
        video = self.cat.video_by_hash(content_hash(path))
        if video is None or video.status != READY:
            return None
        return CopyMatch(video.id, video.path, 1.0, 0.0, video.duration, 0.0, video.duration,
                         video.keyframe_count, exact=True)

    def _read(self, path: Path, on_frames: Callable[[int], None] | None, exclude: Sequence[int]
              ) -> tuple[list[QueryFrame], list[FrameHit], float]:
        """Decode, embed and search the query's keyframes in batches (memory stays flat for long clips),
        among the library videos but ``exclude``."""
        kcfg = dataclasses.replace(self.cfg.keyframes, max_gap=self.r.query_max_gap)
        frames: list[QueryFrame] = []
        pending: list[tuple[int, int, np.ndarray]] = []  # (frame index, view, pixels)
        best: dict[tuple[int, int], FrameHit] = {}  # (frame, keyframe) -> best hit over views
        with KeyframeExtractor(path, kcfg) as ex:
            done = 0
            for kf in ex:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(kf.image, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                flat = _is_flat(kf.image)
                core = None if flat else cut_borders(kf.image)
                insets = tuple(inset_boxes(core)) if core is not None and self.r.insets else ()
                frames.append(QueryFrame(len(frames), float(kf.timestamp), kf.kind, buf.tobytes() if ok else b"",
                                         flat, _is_grey(kf.image), insets))
                if core is not None:
                    pending += [(len(frames) - 1, v, img) for v, img in frame_views(core, self.r.mirror, insets)]
                if len(pending) >= SEARCH_BATCH:
                    self._search(pending, frames, best, exclude)
                    pending = []
                if on_frames is not None:
                    on_frames(ex.frames_decoded - done)
                    done = ex.frames_decoded
            self._search(pending, frames, best, exclude)
            duration = ex.decoded_duration
        if not frames:
            raise InputError(f"{path}: no frames to compare")
        return frames, list(best.values()), duration

    def _search(self, pending: list[tuple[int, int, np.ndarray]], frames: list[QueryFrame],
                best: dict[tuple[int, int], FrameHit], exclude: Sequence[int]) -> None:
        if not pending:
            return
        vectors = self.embedder.embed([img for _, _, img in pending])
        found = self.store.search(vectors, self.r.per_frame_k, exclude_video_ids=exclude)
        for (q, view, _), hits in zip(pending, found):
            for h in hits:
                if h.score < self.r.min_similarity:
                    continue
                key = (q, h.id)
                if key not in best or h.score > best[key].score:
                    best[key] = FrameHit(q, frames[q].time, h.id, h.video_id, h.timestamp, h.score, view)

    def _video(self, video_id: int) -> Video | None:
        if video_id not in self._videos:
            self._videos[video_id] = self.cat.video(video_id)
        return self._videos[video_id]

    def _verify(self, seg: Segment, frames: list[QueryFrame]) -> float | None:
        """The copy score of a segment, or None when it lacks the temporal support of a copy.

        Support: a copy of n seconds of a video shows several of its keyframes (Create keeps one at
        least every ``keyframes.max_gap``), so a chain whose query frames all land on one or two
        library keyframes (a still look-alike, a black frame) is not a copy. Flat library
        keyframes (black, blank) count for nothing.

        Score, with ``verify``: the lowest of three means over the aligned pairs: the similarity
        of the whole pictures, the mean similarity of five regions (four corners, centre), and the
        centre's similarity alone. A copy agrees in all three, whatever was done to it (crops and bars
        shift the corners a little, subtitles and logos touch one region); the same room with
        another person in it fails the centre, and a generically similar picture fails the regions.
        Greyscale query frames are compared with greyscale library frames.
        """
        informative = self._informative(seg)
        span = seg.pairs[-1].query_time - seg.pairs[0].query_time
        need = min(self.r.min_frames, 1 + int(span / self.cfg.keyframes.max_gap))
        if len({p.keyframe_id for p in informative}) < need:
            return None
        if not self.r.verify:
            return seg.similarity
        pairs = verification_pairs(informative, self.r.verify_pairs)
        keys = [(p.q, p.view, p.keyframe_id, frames[p.q].grey) for p in pairs]
        self._embed_query_regions({(q, v, g) for q, v, _, g in keys}, frames)
        self._embed_library_regions({(k, g) for _, _, k, g in keys})
        wholes, means, centres = [], [], []
        for p, (q, v, k, g) in zip(pairs, keys):
            lib = self._lib_regions.get((k, g))
            if lib is None:  # the keyframe image is gone (drift): only its global score is known
                wholes.append(p.score)
                means.append(p.score)
                centres.append(p.score)
                continue
            sims = (self._query_regions[(q, v, g)] * lib).sum(axis=1)  # whole, 4 corners, centre
            wholes.append(float(sims[0]))
            means.append(float(sims[1:].mean()))
            centres.append(float(sims[-1]))
        return min(float(np.mean(wholes)), float(np.mean(means)), float(np.mean(centres)))

    def _informative(self, seg: Segment) -> list[FrameHit]:
        """The segment's pairs whose library keyframe is not flat (black, blank)."""
        flat = self._library_flat(sorted({p.keyframe_id for p in seg.pairs}))
        return [p for p in seg.pairs if not flat.get(p.keyframe_id, False)]

    def _geometry_agrees(self, seg: Segment, frames: list[QueryFrame]) -> bool:
        """Whether ORB + RANSAC aligns at least ``min_aligned_pairs`` of the segment's verification pairs
        (all of them when there are fewer) with ``verify_min_inliers`` inliers.

        A copy shows its source's pictures, moved, scaled or recoloured at most, so its frames align with
        the source's keyframes (45-390 inliers for most pairs of the benchmark's copies; a 180p and a
        240p encode of one film 22-35). A look-alike shares the embedding's impression but not the
        geometry: another toy on the same table, or pages of text against a film's end credits, scored
        0.46-0.62 as copies and aligned none or one pair (0-23 inliers)."""
        pairs = verification_pairs(self._informative(seg), self.r.verify_pairs)
        images = {p.keyframe_id: self.cfg.data_path / self._paths[p.keyframe_id] for p in pairs
                  if self._paths.get(p.keyframe_id)}
        pairs = [p for p in pairs if p.keyframe_id in images and images[p.keyframe_id].is_file()]
        need = min(self.r.min_aligned_pairs, len(pairs))  # keyframe images gone (drift): unknown, not evidence
        if need <= 0:
            return True
        aligned = 0
        for p in pairs:
            found = align(features(frames[p.q].view(p.view)), keyframe_features(str(images[p.keyframe_id])))
            if found.inliers >= self.r.verify_min_inliers:
                aligned += 1
                if aligned >= need:
                    return True
        return False

    def _library_flat(self, ids: Sequence[int]) -> dict[int, bool]:
        """Whether each library keyframe image is flat (missing images count as not flat), cached."""
        need = [i for i in ids if i not in self._flat]
        if need:
            rows = self.cat.keyframes_by_id(need)
            for i in need:
                img = self._read_keyframe(rows[i].image_path) if i in rows else None
                self._flat[i] = img is not None and _is_flat(img)
                self._paths[i] = rows[i].image_path if i in rows else ""
        return {i: self._flat[i] for i in ids}

    def _read_keyframe(self, rel: str) -> np.ndarray | None:
        img = cv2.imread(str(self.cfg.data_path / rel), cv2.IMREAD_COLOR) if rel else None
        return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def _embed_query_regions(self, keys: set[tuple[int, int, bool]], frames: list[QueryFrame]) -> None:
        todo = sorted(k for k in keys if k not in self._query_regions)
        imgs = []
        for q, view, grey in todo:
            rgb = frames[q].view(view)
            imgs += crops(_grey(rgb) if grey else rgb)
        if todo:
            vecs = self.embedder.embed(imgs).reshape(len(todo), -1, self.embedder.dim)
            self._query_regions.update(zip(todo, vecs))

    def _embed_library_regions(self, keys: set[tuple[int, bool]]) -> None:
        """Region embeddings of library keyframes, from their stored images, cached across queries."""
        todo, imgs = [], []
        for k, grey in sorted(keys):
            if (k, grey) in self._lib_regions:
                continue
            img = self._read_keyframe(self._paths.get(k, ""))
            if img is None:
                self._lib_regions[(k, grey)] = None
                continue
            imgs += crops(cut_borders(_grey(img) if grey else img))
            todo.append((k, grey))
        if todo:
            vecs = self.embedder.embed(imgs).reshape(len(todo), -1, self.embedder.dim)
            self._lib_regions.update(zip(todo, vecs))

    def _match(self, seg: Segment, video: Video, score: float, frames: list[QueryFrame],
               duration: float) -> CopyMatch:
        """Segment boundaries in seconds: query span from the aligned frames, library span by the offset."""
        first, last = seg.pairs[0].q, seg.pairs[-1].q
        q_start = 0.0 if first == 0 else _boundary(frames[first - 1], frames[first])
        q_end = duration if last == len(frames) - 1 else _boundary(frames[last], frames[last + 1])
        v_dur = video.duration if video.duration > 0 else float("inf")
        v_start = min(max(0.0, q_start + seg.offset), v_dur)
        v_end = min(max(v_start, q_end + seg.offset), v_dur)
        return CopyMatch(video.id, video.path, score, q_start, q_end, v_start, v_end, len(seg.pairs), seg.pairs)


def explain_away(matches: list[CopyMatch]) -> list[CopyMatch]:
    """Best first, without matches whose part of the clip a much better match already explains.

    A part of a clip has one source. Another video that matches the same part clearly worse is a
    look-alike (another toy on the same table), while a second copy of the source in the library
    (a re-encode ingested twice) matches about as well and is kept.
    """
    kept: list[CopyMatch] = []
    for m in sorted(matches, key=lambda m: (-m.score, -m.frames)):
        span = (m.query_start, m.query_end)
        if not any(k.score - m.score > EXPLAINED_MARGIN and _overlap(span, (k.query_start, k.query_end)) > 0.5
                   for k in kept):
            kept.append(m)
    return kept


def _boundary(before: QueryFrame, after: QueryFrame) -> float:
    """Where a copied part starts or ends between two query frames: at a cut if there is one, else midway."""
    if after.kind == "scene":
        return after.time
    return 0.5 * (before.time + after.time)


def verification_pairs(pairs: Sequence[FrameHit], limit: int) -> list[FrameHit]:
    """At most ``limit`` pairs spread along the chain, the best one per library keyframe."""
    best: dict[int, FrameHit] = {}
    for p in pairs:
        if p.keyframe_id not in best or p.score > best[p.keyframe_id].score:
            best[p.keyframe_id] = p
    chosen = sorted(best.values(), key=lambda p: p.query_time)
    if len(chosen) > limit:
        chosen = [chosen[i] for i in np.linspace(0, len(chosen) - 1, limit).round().astype(int)]
    return chosen
