"""Geometric verification: do two images show the same picture, up to crop, scale, shift and rotation?

Why: a whole-frame CNN descriptor is blurred by what surrounds the picture (player chrome, a
picture-in-picture background) and cannot tell neighbouring keyframes of a static shot apart.
ORB keypoints matched with Lowe's ratio test and a RANSAC similarity transform count the points that
agree on one geometry: nearly immune to crop, overlay, rotation and picture-in-picture.

Keypoints say *where* two pictures agree, not whether everything in them does: in a static shot every
keyframe of a few seconds shares the same background keypoints. So :func:`aligned_similarity` lays
the query onto the keyframe with the transform found and compares the pixels themselves (normalised
correlation of small blurred grey images, blind to brightness and contrast): what moved, a digit that
changed, a person who entered, decides which moment it is.

A stored keyframe's features cost more to compute (about 4 ms) than to read (under 0.5 ms), and a
query meets a dozen keyframes: with ``keyframes.store_features`` they are computed once, when the
keyframe is embedded, and kept beside its image (:func:`store_keyframe_features`); a keyframe
without them is computed from its image, with the same result.
"""

from __future__ import annotations

import io
import math
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .images import cut_borders

RATIO = 0.7  # Lowe's ratio test
MIN_GOOD = 8  # fewer ratio-test matches than this cannot support a transform
MIN_INLIER_SHARE = 0.3  # a transform most matches disagree with is chance
SCALE_RANGE = (0.15, 6.0)  # a plausible zoom between a screenshot and a stored keyframe
QUERY_SIDE = 640
ORB_POINTS = 500  # keypoints kept per image
ORB_FAST = 10  # FAST corner threshold: low, so that flat or blurred pictures still get keypoints
_orb = cv2.ORB_create(nfeatures=ORB_POINTS, fastThreshold=ORB_FAST)

COMPARE_SIDE = 128  # long side of the grey images compared after alignment: detail, not noise
QUERY_COMPARE_SIDE = 256  # the query's copy is kept finer: its picture may fill only part of it
GRID = 4  # cells per side compared after alignment
FINE_SIDE = 256  # long side of the finer grey copies that tell apart the alike keyframes of a still shot
FEATURES_SUFFIX = ".orb.npz"  # a keyframe's stored features: its image's name with this suffix instead of .jpg
FEATURES_VERSION = f"orb{ORB_POINTS}-fast{ORB_FAST}-side{COMPARE_SIDE}"  # stored features of other settings are not used


class Features(NamedTuple):
    """ORB keypoints (their (x, y) positions, all that alignment needs) and descriptors of an image, and
    a small grey copy of it for pixel comparison (``scale`` maps keypoint coordinates onto the copy;
    kept small because keyframes' features are cached and stored)."""

    points: np.ndarray  # (n, 2) float32
    descriptors: np.ndarray | None  # (n, 32) uint8
    small: np.ndarray
    scale: float


class Alignment(NamedTuple):
    """How many keypoints agree on one similarity transform, and the transform (query -> keyframe)."""

    inliers: int
    transform: np.ndarray | None  # 2x3, in keypoint coordinates


NO_ALIGNMENT = Alignment(0, None)


def _shrunk(grey: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """A grey image area-averaged down to a long side of at most ``side``, and the scale from its pixels
    onto the copy."""
    h, w = grey.shape
    scale = min(1.0, side / max(h, w))
    small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w


def _features(grey: np.ndarray, compare_side: int) -> Features:
    keypoints, descriptors = _orb.detectAndCompute(grey, None)
    points = cv2.KeyPoint_convert(keypoints).reshape(-1, 2) if keypoints else np.zeros((0, 2), np.float32)
    return Features(points, descriptors, *_shrunk(grey, compare_side))


def features(rgb: np.ndarray, side: int = QUERY_SIDE) -> Features:
    """Features of an RGB image, downscaled so its long side is at most ``side``."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = side / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return _features(grey, QUERY_COMPARE_SIDE)


def features_file(keyframe_path: str | Path) -> Path:
    """Where a keyframe image's features are stored: beside it, named after it."""
    return Path(keyframe_path).with_suffix(FEATURES_SUFFIX)


def store_keyframe_features(keyframe_path: str | Path) -> bool:
    """Compute the features of a stored keyframe image and store them beside it, for
    :func:`keyframe_features`: from the image as written, so they are exactly what would be computed
    without them (and Search answers alike with or without them). Returns whether they were stored.

    Written in one call, never into a folder that is gone: a keyframe whose video's ingest was undone
    meanwhile is skipped, not recreated. A file cut short by a crash is not read (the features are
    computed again from the image)."""
    f = _image_features(str(keyframe_path))
    if f is None:
        return False  # the image is gone (its ingest failed): nothing to keep
    descriptors = f.descriptors if f.descriptors is not None else np.zeros((0, 32), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, version=np.array(FEATURES_VERSION), points=f.points, descriptors=descriptors,
             small=f.small, scale=np.float64(f.scale))
    try:
        features_file(keyframe_path).write_bytes(buf.getvalue())
    except FileNotFoundError:
        return False  # its folder was removed meanwhile
    return True


def has_stored_features(keyframe_path: str | Path) -> bool:
    """Whether features Search can read are stored beside a keyframe image (not missing, cut short or
    of other settings)."""
    return _stored_features(features_file(keyframe_path)) is not None


def _image_features(path: str) -> Features | None:
    """Features computed from a stored keyframe image (None when it cannot be read)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return None if img is None else _features(img, COMPARE_SIDE)


def _stored_features(path: Path) -> Features | None:
    """The features stored beside a keyframe image, or None where there are none usable (missing,
    cut short, of other settings)."""
    try:
        with np.load(path) as data:
            if str(data["version"]) != FEATURES_VERSION:
                return None
            points, descriptors, small = data["points"], data["descriptors"], data["small"]
            scale = float(data["scale"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if points.shape != (len(descriptors), 2) or small.ndim != 2:
        return None
    return Features(points.astype(np.float32, copy=False), descriptors if len(descriptors) else None, small, scale)


@lru_cache(maxsize=4096)
def keyframe_features(path: str) -> Features:
    """Features of a stored keyframe JPEG: as stored beside it, else computed from it (cached: batches
    of queries meet the same keyframes)."""
    found = _stored_features(features_file(path)) or _image_features(path)
    return found or Features(np.zeros((0, 2), np.float32), None, np.zeros((1, 1), np.uint8), 1.0)


def align(a: Features, b: Features) -> Alignment:
    """The similarity transform from ``a`` to ``b`` most matched keypoints agree on (0 inliers = unrelated)."""
    da, db = a.descriptors, b.descriptors
    if da is None or db is None or len(da) < MIN_GOOD or len(db) < MIN_GOOD:
        return NO_ALIGNMENT
    # the two nearest of b's descriptors to each of a's, as arrays (BFMatcher.knnMatch computes the same
    # with batchDistance, then wraps every pair in a Python object)
    dist, nearest = cv2.batchDistance(da, db, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    good = np.flatnonzero(dist[:, 0] < RATIO * dist[:, 1])
    if len(good) < MIN_GOOD:
        return NO_ALIGNMENT
    src = a.points[good]
    dst = b.points[nearest[good, 0]]
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=6.0)
    if transform is None or mask is None:
        return NO_ALIGNMENT
    n = int(mask.sum())
    scale = math.hypot(transform[0, 0], transform[0, 1])
    if n < MIN_INLIER_SHARE * len(good) or not SCALE_RANGE[0] < scale < SCALE_RANGE[1]:
        return NO_ALIGNMENT
    return Alignment(n, transform)


def aligned_similarity(query: Features, keyframe: Features, alignment: Alignment) -> float:
    """Median over a grid of cells of the normalised correlation (-1..1) of the keyframe and the query
    laid onto it, where the query covers it.

    Compared small and blurred so that noise, JPEG blocks and a slightly off transform do not count,
    normalised so that brightness and contrast edits do not either, and cell by cell so that a
    subtitle box or a logo spoils a cell or two, not the verdict.
    """
    laid = _laid_onto(query, keyframe.small, keyframe.scale, alignment)
    if laid is None:
        return -1.0
    warped, target, cover = laid
    rows, cols = np.flatnonzero(cover.any(axis=1)), np.flatnonzero(cover.any(axis=0))
    scores = []  # cells of the part the query covers, however much of the keyframe that is
    for ys in np.array_split(np.arange(rows[0], rows[-1] + 1), GRID):
        for xs in np.array_split(np.arange(cols[0], cols[-1] + 1), GRID):
            cell = np.ix_(ys, xs)
            keep = cover[cell]
            if keep.mean() < 0.8:
                continue
            score = _correlation(warped[cell][keep], target[cell][keep], flat=4e-3)  # a flat cell (sky, a black bar) says nothing
            if score is not None:
                scores.append(score)
    return float(np.median(scores)) if scores else -1.0


def _correlation(a: np.ndarray, b: np.ndarray, flat: float = 0.0) -> float | None:
    """Normalised correlation (-1..1) of two samples of pixels; None where they are too flat to say
    (the product of their spreads at most ``flat`` per pixel)."""
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > flat * len(a) else None


@lru_cache(maxsize=512)
def keyframe_detail(path: str) -> tuple[np.ndarray, float]:
    """A stored keyframe as a FINE_SIDE grey copy, and the scale from its pixels onto the copy (cached
    apart from :func:`keyframe_features`: only keyframes the cells found alike are ever asked for it)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        return np.zeros((1, 1), np.uint8), 1.0
    return _shrunk(img, FINE_SIDE)


CHANGE_FLOOR = 16.0  # grey levels (FINE_SIDE copies) alike keyframes must differ by somewhere for a pixel to count as changed
STILL_SHARE = 0.5  # keyframes alike in more than this share of their pixels show one still view (fixed camera, test card)
MIN_CHANGED = 20  # changed pixels, at least, worth comparing
MOTION_FLOOR = 12.0  # grey levels a pixel must differ from the view's background by to count as moved (codec noise is less)
MOTION_BLUR = 3.0  # sigma, in FINE_SIDE pixels, of the blur that lets a thing that moved a little still overlap
MOTION_SLACK = 100.0  # grey levels x pixels: difference maps this light are alike (nothing moved in either)
MOTION_MARGIN = 0.3  # keyframes whose moved things lie this much less where the query's do than the best's are out
OUT = -2.0  # still_view_similarity's score for a keyframe out of the running


def still_view_similarity(pairs: list[tuple[Features, str, Alignment]]) -> list[float] | None:
    """For keyframes that the cells found alike, each with the query (view) aligned to it: how well
    the query matches each where they differ among themselves (by CHANGE_FLOOR grey levels or more at
    FINE_SIDE), as a person comparing them would look there and nowhere else, glyph by glyph: the normalised
    correlation, -1..1, cell by cell (:func:`_cell_correlation`).

    Why: what tells a still view's keyframes apart is small (a person in a fixed camera's view, a
    burnt-in clock or frame counter on test bars). Over the whole picture it drowns in what they
    share, and the query's own edits (noise, JPEG, overlays) decide instead.

    A textured thing that moved by more than its own detail correlates with its shifted self no
    better than with the background, so first, with three keyframes or more, where the query differs
    from the view's background (the keyframes' per-pixel median) is set against where each keyframe
    does: keyframes under the best by more than MOTION_MARGIN are OUT. Where things are is coarse and
    knows no digits; what they look like decides.

    None if the keyframes do not show one still view (more than 1 - STILL_SHARE of their pixels
    changed, as in a pan; or their sizes differ) or if under MIN_CHANGED pixels changed (the same
    picture: nothing here tells them apart); -1.0 for a keyframe the query does not cover enough of."""
    details = [keyframe_detail(path) for _, path, _ in pairs]
    if len({small.shape for small, _ in details}) != 1:
        return None
    stack = np.stack([cv2.GaussianBlur(small.astype(np.float32), (3, 3), 0) for small, _ in details])
    changed = stack.max(axis=0) - stack.min(axis=0) > CHANGE_FLOOR
    if changed.mean() > 1 - STILL_SHARE or changed.sum() < MIN_CHANGED:
        return None
    laid = [_laid_onto(query, small, scale, alignment) for (small, scale), (query, _, alignment) in zip(details, pairs)]
    scores = []
    for one in laid:
        zone = changed & one[2] if one is not None else None
        score = _cell_correlation(one[0], one[1], zone) if zone is not None and zone.sum() >= MIN_CHANGED else None
        scores.append(-1.0 if score is None else score)
    if len(pairs) >= 3:
        background = np.median(np.stack([small for small, _ in details]), axis=0).astype(np.float32)
        moved = _moved_alike(laid, cv2.GaussianBlur(background, (3, 3), 0))
        near = max(moved) - MOTION_MARGIN
        scores = [score if m >= near else OUT for score, m in zip(scores, moved)]
    return scores


LAYOUT_SIZE = (32, 18)  # (w, h) of the edge maps compared where nothing aligned: where a picture's outlines are
LAYOUT_FLAT = 2.0  # spread of the edge map (grey levels a pixel): a picture this flat has no layout


def layout(rgb: np.ndarray) -> np.ndarray | None:
    """A border-cut RGB picture as a LAYOUT_SIZE map of where its edges are (gradient magnitude at four
    times that size, area-averaged), zero-mean and of unit norm (the dot product of two is their
    normalised correlation); None for a picture with no edges to place."""
    w, h = LAYOUT_SIZE
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (4 * w, 4 * h), interpolation=cv2.INTER_AREA).astype(np.float32)
    edges = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    edges = cv2.resize(edges, LAYOUT_SIZE, interpolation=cv2.INTER_AREA)
    edges -= edges.mean()
    norm = float(np.linalg.norm(edges))
    return edges / norm if norm > LAYOUT_FLAT * edges.size ** 0.5 else None


@lru_cache(maxsize=4096)
def keyframe_layout(path: str) -> np.ndarray | None:
    """:func:`layout` of a stored keyframe, its borders cut as when it was embedded (read at half size:
    a thumbnail needs no more)."""
    img = cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_2)
    return None if img is None else layout(cut_borders(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))


CELL = 8  # FINE_SIDE pixels a side of the cells compared one by one where keyframes differ: about a digit
MIN_CELL = CELL * CELL // 4  # changed pixels a cell needs to count
CELL_FLAT = 4.0  # grey levels squared, per pixel: a cell this flat in either picture says nothing


def _cell_correlation(a: np.ndarray, b: np.ndarray, zone: np.ndarray) -> float | None:
    """The mean over CELL-sized cells of the normalised correlation of ``a`` and ``b`` within ``zone``.

    Why cells: a burnt-in counter differs from its neighbours' in a few digits; over the whole zone
    the digits that differ from all keyframes drown the one the query shares with the right one
    (the higher digits change slowest, so the nearer keyframe shares more of them). Cell sums by
    reshaping: no loop over cells."""
    h, w = zone.shape
    hh, ww = -(-h // CELL) * CELL, -(-w // CELL) * CELL

    def sums(x: np.ndarray) -> np.ndarray:
        out = np.zeros((hh, ww), np.float64)
        out[:h, :w] = x
        return out.reshape(hh // CELL, CELL, ww // CELL, CELL).sum(axis=(1, 3))

    m = zone.astype(np.float64)
    n, sa, sb = sums(m), sums(a * m), sums(b * m)
    ok = n >= MIN_CELL
    n = np.where(ok, n, 1)
    va, vb, cov = sums(a * a * m) - sa * sa / n, sums(b * b * m) - sb * sb / n, sums(a * b * m) - sa * sb / n
    ok &= (va > CELL_FLAT * n) & (vb > CELL_FLAT * n)
    return float(np.mean(cov[ok] / np.sqrt(va[ok] * vb[ok]))) if ok.any() else None


def _moved_alike(laid: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None], background: np.ndarray) -> list[float]:
    """For each keyframe with the query laid onto it: how much what differs from the background in the
    query is where it differs in the keyframe, as the overlap (0..1) of the blurred difference maps:
    twice their common part over their sum. Both all but empty (nothing moved in either, the query
    is the background as the keyframe is) is full agreement (MOTION_SLACK), not noise: a cosine of
    two near-empty maps let a camera's shake outweigh it. -1.0 where the query was not laid."""
    out = []
    for one in laid:
        if one is None:
            out.append(-1.0)
            continue
        warped, target, cover = one
        # the query's brightness and contrast fitted to the background's where it covers it, then again
        # without what stands out of that fit: a thing that moved would pull the fit towards itself
        gain, offset = np.polyfit(warped[cover], background[cover], 1)
        fits = cover & (np.abs(warped * gain + offset - background) < 2 * MOTION_FLOOR)
        if fits.sum() > 0.5 * cover.sum():
            gain, offset = np.polyfit(warped[fits], background[fits], 1)
        moved = [cv2.GaussianBlur(np.where(cover, np.maximum(np.abs(x - background) - MOTION_FLOOR, 0), 0), (0, 0),
                                  MOTION_BLUR) for x in (warped * gain + offset, target)]
        both = float(moved[0].sum() + moved[1].sum())
        out.append((2 * float(np.minimum(*moved).sum()) + MOTION_SLACK) / (both + MOTION_SLACK))
    return out


def _laid_onto(query: Features, target: np.ndarray, scale: float,
               alignment: Alignment) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The query's grey copy laid onto a keyframe's grey copy (``scale``: keyframe pixels -> copy) with
    the alignment found, both lightly blurred, and where the query covers it; None where there is no
    transform or the query covers under a tenth of the copy."""
    if alignment.transform is None:
        return None
    h, w = target.shape
    # query copy -> keypoint coordinates -> keyframe copy
    m = alignment.transform * scale
    m[:, :2] /= query.scale
    grey = query.small
    shrink = math.hypot(m[0, 0], m[0, 1])
    if shrink < 1:  # area-average the query down first: warping alone would alias
        qh, qw = grey.shape
        grey = cv2.resize(grey, (max(1, round(qw * shrink)), max(1, round(qh * shrink))), interpolation=cv2.INTER_AREA)
        m[:, :2] *= np.array([qw / grey.shape[1], qh / grey.shape[0]])
    warped = cv2.warpAffine(grey, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32)
    cover = cv2.warpAffine(np.full(grey.shape, 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) == 255
    cover = cv2.erode(cover.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if cover.sum() < 0.1 * cover.size:
        return None
    blurred = cv2.GaussianBlur(warped, (3, 3), 0), cv2.GaussianBlur(target.astype(np.float32), (3, 3), 0)
    return blurred[0], blurred[1], cover


def forget_keyframes() -> None:
    """Empty the caches of stored keyframes' features, as a new process starts with them empty (the
    eval times a one-off Search.py this way)."""
    keyframe_features.cache_clear()
    keyframe_detail.cache_clear()
    keyframe_layout.cache_clear()
