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
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np

RATIO = 0.7  # Lowe's ratio test
MIN_GOOD = 8  # fewer ratio-test matches than this cannot support a transform
MIN_INLIER_SHARE = 0.3  # a transform most matches disagree with is chance
SCALE_RANGE = (0.15, 6.0)  # a plausible zoom between a screenshot and a stored keyframe
QUERY_SIDE = 640
_orb = cv2.ORB_create(nfeatures=500, fastThreshold=10)
_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

COMPARE_SIDE = 128  # long side of the grey images compared after alignment: detail, not noise
QUERY_COMPARE_SIDE = 256  # the query's copy is kept finer: its picture may fill only part of it
GRID = 4  # cells per side compared after alignment
FINE_SIDE = 256  # long side of the finer grey copies that tell apart the alike keyframes of a still shot


class Features(NamedTuple):
    """ORB keypoints and descriptors of an image, and a small grey copy of it for pixel comparison
    (``scale`` maps keypoint coordinates onto the copy; kept small because keyframes' features are cached)."""

    keypoints: tuple[cv2.KeyPoint, ...]
    descriptors: np.ndarray | None
    small: np.ndarray
    scale: float


class Alignment(NamedTuple):
    """How many keypoints agree on one similarity transform, and the transform (query -> keyframe)."""

    inliers: int
    transform: np.ndarray | None  # 2x3, in keypoint coordinates


NO_ALIGNMENT = Alignment(0, None)


def _features(grey: np.ndarray, compare_side: int) -> Features:
    keypoints, descriptors = _orb.detectAndCompute(grey, None)
    h, w = grey.shape
    scale = min(1.0, compare_side / max(h, w))
    small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return Features(keypoints, descriptors, small, small.shape[1] / w)


def features(rgb: np.ndarray, side: int = QUERY_SIDE) -> Features:
    """Features of an RGB image, downscaled so its long side is at most ``side``."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = side / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return _features(grey, QUERY_COMPARE_SIDE)


@lru_cache(maxsize=4096)
def keyframe_features(path: str) -> Features:
    """Features of a stored keyframe JPEG (cached: batches of queries meet the same keyframes)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        return Features((), None, np.zeros((1, 1), np.uint8), 1.0)
    return _features(img, COMPARE_SIDE)


def align(a: Features, b: Features) -> Alignment:
    """The similarity transform from ``a`` to ``b`` most matched keypoints agree on (0 inliers = unrelated)."""
    ka, da, kb, db = a.keypoints, a.descriptors, b.keypoints, b.descriptors
    if da is None or db is None or len(da) < MIN_GOOD or len(db) < MIN_GOOD:
        return NO_ALIGNMENT
    good = [m for m, *rest in _matcher.knnMatch(da, db, k=2) if rest and m.distance < RATIO * rest[0].distance]
    if len(good) < MIN_GOOD:
        return NO_ALIGNMENT
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
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
            a, b = warped[cell][keep], target[cell][keep]
            a, b = a - a.mean(), b - b.mean()
            denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
            if denom > 4e-3 * len(a):  # a flat cell (sky, a black bar) says nothing
                scores.append(float((a * b).sum() / denom))
    return float(np.median(scores)) if scores else -1.0


@lru_cache(maxsize=512)
def keyframe_detail(path: str) -> tuple[np.ndarray, float]:
    """A stored keyframe as a FINE_SIDE grey copy, and the scale from its pixels onto the copy (cached
    apart from :func:`keyframe_features`: only keyframes of still shots are ever asked for it)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        return np.zeros((1, 1), np.uint8), 1.0
    h, w = img.shape
    scale = min(1.0, FINE_SIDE / max(h, w))
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / w


def detail_similarity(query: Features, keyframe_path: str, alignment: Alignment) -> float:
    """Normalised correlation (-1..1) of the whole covered part of a keyframe and the query laid onto
    it, at FINE_SIDE: finer than :func:`aligned_similarity`, and one figure for the whole picture
    rather than a median of cells, so that a small thing that moved (a person crossing a fixed
    camera's view) counts. Only for telling apart keyframes that the cells found alike."""
    small, scale = keyframe_detail(keyframe_path)
    laid = _laid_onto(query, small, scale, alignment)
    if laid is None:
        return -1.0
    warped, target, cover = laid
    a, b = warped[cover], target[cover]
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else -1.0


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
