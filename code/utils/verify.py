"""Geometric verification: do two images show the same picture, up to crop, scale, shift and rotation?

Why: a whole-frame CNN descriptor is blurred by what surrounds the picture (player chrome, a
picture-in-picture background) and cannot tell neighbouring keyframes of a static shot apart.
ORB keypoints matched with Lowe's ratio test and a RANSAC similarity transform count the points that
agree on one geometry: nearly immune to crop, overlay, rotation and picture-in-picture, and sharp
enough to pick the right moment among look-alike keyframes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

RATIO = 0.7  # Lowe's ratio test
MIN_GOOD = 8  # fewer ratio-test matches than this cannot support a transform
MIN_INLIER_SHARE = 0.3  # a transform most matches disagree with is chance
SCALE_RANGE = (0.15, 6.0)  # a plausible zoom between a screenshot and a stored keyframe
QUERY_SIDE = 640
_orb = cv2.ORB_create(nfeatures=800, fastThreshold=10)
_matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

Features = tuple[tuple[cv2.KeyPoint, ...], np.ndarray | None]


def features(rgb: np.ndarray, side: int = QUERY_SIDE) -> Features:
    """ORB keypoints and descriptors of an RGB image, downscaled so its long side is at most ``side``."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = side / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return _orb.detectAndCompute(grey, None)


@lru_cache(maxsize=4096)
def keyframe_features(path: str) -> Features:
    """Features of a stored keyframe JPEG (cached: batches of queries meet the same keyframes)."""
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        return (), None
    return _orb.detectAndCompute(img, None)


def inliers(a: Features, b: Features) -> int:
    """How many matched keypoints agree on one similarity transform from ``a`` to ``b`` (0 = unrelated)."""
    (ka, da), (kb, db) = a, b
    if da is None or db is None or len(da) < MIN_GOOD or len(db) < MIN_GOOD:
        return 0
    good = [m for m, *rest in _matcher.knnMatch(da, db, k=2) if rest and m.distance < RATIO * rest[0].distance]
    if len(good) < MIN_GOOD:
        return 0
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=6.0)
    if transform is None or mask is None:
        return 0
    n = int(mask.sum())
    scale = math.hypot(transform[0, 0], transform[0, 1])
    if n < MIN_INLIER_SHARE * len(good) or not SCALE_RANGE[0] < scale < SCALE_RANGE[1]:
        return 0
    return n
