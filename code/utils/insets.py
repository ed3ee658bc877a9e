"""Picture-in-picture insets: where in a query a smaller picture sits, framed by straight edges.

Why: a screenshot of a video playing inside another (a reaction video, a news inset, a player on a
web page) shows the library's picture in a fraction of the image, over unrelated footage. The
whole-image embedding sees mostly the background, and Search's fixed windows cut through an inset
as often as they contain it; embedded on its own, the inset's crop finds its video like an
untouched frame (on the eval's picture-in-picture queries, an exact crop found every one).

An inset's frame is four straight edges: along most of each side of an axis-aligned rectangle the
colour steps sharply from one pixel to the next. Found on a small copy of the image with cumulative
sums (no Hough transform, which breaks an edge into pieces wherever the two sides happen to match).
A framed area with nothing in it (a black pillarbox beside a portrait video, a blank panel) is no
picture: it would match every fade and blank frame, so it is not an inset. A box found in error
otherwise costs time: an inset's embedding must still score with a keyframe like a whole picture's.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from .images import BLANK_STD, luma_spread

SIDE = 320  # long side of the copy searched for edges, pixels
STEP = 14  # colour step (0-255, largest of R, G, B) between neighbouring pixels that counts as an edge
MIN_SIDE = 0.25  # an inset's sides are at least this share of the image's
LINE_COVER = 0.75  # share of a side that must be edge pixels, on average over the four sides...
SIDE_COVER = 0.5  # ...and at least on each side
MAX_LINES = 24  # strongest candidate rows (and columns) combined into boxes
ASPECT = (0.4, 3.0)  # width / height of a plausible video picture
MAX_AREA = 0.9  # a box this much of the image is the image itself (its borders are cut elsewhere)
OVERLAP = 0.5  # boxes overlapping a better one more than this (intersection over union) are dropped
MARGIN = 0.02  # share of each side cropped off inside the frame: a drawn border or a pixel of the background spoils the crop's embedding


class Box(NamedTuple):
    """A rectangle in image pixels: rows top..bottom, columns left..right (bottom and right excluded)."""

    top: int
    bottom: int
    left: int
    right: int


def _largest_channel(diff: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of its channels (elementwise maxima: several times faster than a reduce over the last axis)."""
    return np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2])


def _lines(edges: np.ndarray, min_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``edges`` (bool, lines x positions) where some stretch of ``min_len`` is mostly edge:
    the strongest MAX_LINES that are local maxima over two rows either side (a drawn border gives two
    edges a pixel or two apart), and the per-row cumulative edge counts for measuring any stretch."""
    counts = np.zeros((edges.shape[0], edges.shape[1] + 1), np.int32)
    np.cumsum(edges, axis=1, dtype=np.int32, out=counts[:, 1:])
    if counts.shape[1] <= min_len:
        return np.zeros(0, np.intp), counts
    best = (counts[:, min_len:] - counts[:, :-min_len]).max(axis=1) / min_len
    padded = np.pad(best, 2)
    peak = np.ones(len(best), bool)
    for d in (0, 1, 3, 4):
        peak &= best >= padded[d:d + len(best)]
    rows = np.flatnonzero(peak & (best >= LINE_COVER))
    return np.sort(rows[np.argsort(-best[rows])][:MAX_LINES]), counts


def inset_boxes(rgb: np.ndarray, max_boxes: int = 2) -> list[Box]:
    """The likeliest inset pictures of an RGB image, best framed first (none in most images)."""
    h0, w0 = rgb.shape[:2]
    if min(h0, w0) < 8:  # no room for a framed picture (and no pixel pairs to difference in a 1-pixel line)
        return []
    scale = min(1.0, SIDE / max(h0, w0))
    small = rgb if scale >= 1 else cv2.resize(rgb, (max(1, round(w0 * scale)), max(1, round(h0 * scale))),
                                              interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    # an edge between rows y and y + 1 (columns x and x + 1), allowed a pixel of slack either way
    step_y = _largest_channel(cv2.absdiff(small[1:], small[:-1])) > STEP
    step_x = _largest_channel(cv2.absdiff(small[:, 1:], small[:, :-1])) > STEP
    step_y = cv2.dilate(step_y.view(np.uint8), np.ones((3, 1), np.uint8)).view(bool)
    step_x = cv2.dilate(step_x.view(np.uint8), np.ones((1, 3), np.uint8)).view(bool)
    min_w, min_h = max(2, int(MIN_SIDE * w)), max(2, int(MIN_SIDE * h))
    rows, row_counts = _lines(step_y, min_w)
    cols, col_counts = _lines(np.ascontiguousarray(step_x.T), min_h)
    if len(rows) < 2 or len(cols) < 2:
        return []
    i, j = np.triu_indices(len(rows), 1)
    tops, bottoms = rows[i], rows[j]
    tall = bottoms - tops >= min_h
    tops, bottoms = tops[tall], bottoms[tall]
    i, j = np.triu_indices(len(cols), 1)
    lefts, rights = cols[i], cols[j]
    wide = rights - lefts >= min_w
    lefts, rights = lefts[wide], rights[wide]
    if not len(tops) or not len(lefts):
        return []
    # share of edge pixels along each side, for every (top, bottom) x (left, right) pair
    width = (rights - lefts)[None, :].astype(np.float32)
    height = (bottoms - tops)[:, None].astype(np.float32)
    sides = np.stack([
        (row_counts[tops][:, rights] - row_counts[tops][:, lefts]) / width,
        (row_counts[bottoms][:, rights] - row_counts[bottoms][:, lefts]) / width,
        (col_counts[lefts][:, bottoms] - col_counts[lefts][:, tops]).T / height,
        (col_counts[rights][:, bottoms] - col_counts[rights][:, tops]).T / height,
    ])
    cover = sides.mean(axis=0)
    aspect = width / height
    ok = ((sides.min(axis=0) >= SIDE_COVER) & (cover >= LINE_COVER) & (height * width < MAX_AREA * h * w)
          & (aspect > ASPECT[0]) & (aspect < ASPECT[1]))
    a, b = np.nonzero(ok)
    # boxes in the small copy's pixels: edges lie between pixels, so a picture starts one past its
    # top / left edge and ends on its bottom / right one
    found = np.stack([tops[a] + 1, bottoms[a] + 1, lefts[b] + 1, rights[b] + 1], axis=1)
    found = found[np.lexsort((-(height[a, 0] * width[0, b]), -np.round(cover[a, b], 2)))]  # best framed, then largest
    boxes: list[Box] = []
    while len(found) and len(boxes) < max_boxes:
        best = found[0]
        if luma_spread(crop(small, Box(*best))) >= BLANK_STD:  # framed but blank is no picture (nor its near twins)
            boxes.append(Box(*(min(limit, round(int(v) / scale)) for v, limit in zip(best, (h0, h0, w0, w0)))))
        found = found[_iou(found, best) < OVERLAP]
    return boxes


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each row of ``boxes`` (top, bottom, left, right) with ``box``."""
    inter = (np.clip(np.minimum(boxes[:, 1], box[1]) - np.maximum(boxes[:, 0], box[0]), 0, None)
             * np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 2], box[2]), 0, None))
    areas = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    return inter / np.maximum(1, areas + (box[1] - box[0]) * (box[3] - box[2]) - inter)


def crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The picture inside ``box``, MARGIN inside its frame, as a contiguous array (the model and
    OpenCV want one)."""
    dy, dx = round(MARGIN * (box.bottom - box.top)), round(MARGIN * (box.right - box.left))
    return np.ascontiguousarray(rgb[box.top + dy:box.bottom - dy, box.left + dx:box.right - dx])
