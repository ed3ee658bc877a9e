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

RATIO = 0.7  # Lowe's ratio test
MIN_GOOD = 8  # fewer ratio-test matches than this cannot support a transform
MIN_INLIER_SHARE = 0.3  # a transform most matches disagree with is chance
SCALE_RANGE = (0.15, 6.0)  # a plausible zoom between a screenshot and a stored keyframe
QUERY_SIDE = 640
ORB_POINTS = 500  # keypoints kept per image
ORB_FAST = 10  # FAST corner threshold: low, so that flat or blurred pictures still get keypoints
_orb = cv2.ORB_create(nfeatures=ORB_POINTS, fastThreshold=ORB_FAST)
_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

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
    good = [m for m, *rest in _matcher.knnMatch(da, db, k=2) if rest and m.distance < RATIO * rest[0].distance]
    if len(good) < MIN_GOOD:
        return NO_ALIGNMENT
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
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
    return _shrunk(img, FINE_SIDE)


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


MOTION_FLOOR = 12.0  # grey levels a pixel must differ from the shot's background by to count as moved (codec noise is less)
MOTION_BLUR = 3.0  # sigma, in FINE_SIDE pixels, of the blur that lets a thing that moved a little still overlap


def motion_similarity(pairs: list[tuple[Features, str, Alignment]]) -> list[float] | None:
    """For keyframes of one fixed camera's shot, each with the query (view) aligned to it: how much
    what differs from the shot's background in the query (a person, a thing that moved) is where it
    differs in the keyframe (cosine, 0..1, of the blurred difference maps). The background is the
    keyframes' per-pixel median, so at least three are needed; None if fewer, or if their sizes differ.

    Why not compare the pixels themselves: a textured thing that moved by more than its own detail
    differs from its shifted self as much as from the background, so pixel agreement cannot tell a
    keyframe where it stands close by from one where it stands across the room; where things differ
    from the background can. 0.0 for every keyframe when nothing in the query differs from it."""
    if len(pairs) < 3:
        return None
    details = [keyframe_detail(path) for _, path, _ in pairs]
    if len({small.shape for small, _ in details}) != 1:
        return None
    background = cv2.GaussianBlur(np.median(np.stack([small for small, _ in details]), axis=0).astype(np.float32),
                                  (3, 3), 0)
    scores = []
    for (small, scale), (query, _, alignment) in zip(details, pairs):
        laid = _laid_onto(query, small, scale, alignment)
        if laid is None:
            scores.append(-1.0)
            continue
        warped, target, cover = laid
        # the query's brightness and contrast fitted to the background's, where it covers it
        gain, offset = np.polyfit(warped[cover], background[cover], 1)
        moved = [cv2.GaussianBlur(np.where(cover, np.maximum(np.abs(x - background) - MOTION_FLOOR, 0), 0), (0, 0),
                                  MOTION_BLUR) for x in (warped * gain + offset, target)]
        norm = float(np.sqrt((moved[0] ** 2).sum() * (moved[1] ** 2).sum()))
        scores.append(float((moved[0] * moved[1]).sum() / norm) if norm > 0 else 0.0)
    return scores


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
