"""utils.insets: picture-in-picture insets found by their straight frame, on real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import need_videos
from test_search import frame_at
from utils.insets import SIDE, Box, crop, inset_boxes


def iou(a: Box, b: Box) -> float:
    inter = max(0, min(a.bottom, b.bottom) - max(a.top, b.top)) * max(0, min(a.right, b.right) - max(a.left, b.left))
    area = lambda x: (x.bottom - x.top) * (x.right - x.left)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("inset,background,share,x,y,border", [
    ("cockatoo_720p_h264.mp4", "mdn_pig_480p_h264.mp4", 0.4, 0.1, 0.8, False),
    ("mdn_flower_540p_h264.mp4", "mdn_pig_480p_h264.mp4", 0.5, 0.9, 0.3, True),
    ("chaplin_360p_h264.mp4", "intel_asl_book_480p_h264.mkv", 0.45, 0.5, 0.5, False),
    ("bikes_10s_640x272_h264.mp4", "portrait_keyboard_1080x1920_h264.mp4", 0.3, 0.7, 0.1, True),
])
def test_pasted_picture_is_found(inset, background, share, x, y, border):
    """A real frame pasted into another real frame (with or without a drawn border) comes back as the
    first box, its sides within a few pixels (a drawn border may count in)."""
    videos = need_videos()
    _, picture = frame_at(videos / inset, 2.0)
    _, shot = frame_at(videos / background, 1.0)
    shot = np.ascontiguousarray(shot[: shot.shape[1] * 9 // 16]) if shot.shape[0] > shot.shape[1] else shot.copy()
    bh, bw = shot.shape[:2]
    iw = int(bw * share)
    ih = iw * picture.shape[0] // picture.shape[1]
    top, left = int((bh - ih) * y), int((bw - iw) * x)
    if border:
        cv2.rectangle(shot, (left - 2, top - 2), (left + iw + 1, top + ih + 1), (255, 255, 255), 2)
    shot[top:top + ih, left:left + iw] = cv2.resize(picture, (iw, ih), interpolation=cv2.INTER_AREA)
    boxes = inset_boxes(shot)
    truth = Box(top, top + ih, left, left + iw)
    assert boxes and iou(boxes[0], truth) > 0.85, (boxes, truth)
    inside = crop(shot, boxes[0])
    assert inside.flags.c_contiguous and inside.shape[:2] < (boxes[0].bottom - boxes[0].top, boxes[0].right - boxes[0].left)


def test_nothing_framed_in_plain_pictures():
    """A flat image, a smooth gradient and noise have no straight-edged box in them."""
    rng = np.random.default_rng(0)
    flat = np.full((360, 640, 3), 90, np.uint8)
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 360, 0), 3, 2)
    noise = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    assert [inset_boxes(im) for im in (flat, ramp, noise)] == [[], [], []]
    assert [inset_boxes(np.zeros(shape, np.uint8)) for shape in ((1, 1, 3), (1, 640, 3), (360, 1, 3))] == [[], [], []]


def test_drawn_rectangle_outline_is_found_and_tiny_boxes_are_not():
    """The box comes back in the image's own pixels at any size; a frame under MIN_SIDE of the image
    does not count."""
    big = np.full((1080, 1920, 3), 40, np.uint8)
    big[300:800, 600:1500] = np.random.default_rng(1).integers(60, 200, (500, 900, 1), dtype=np.uint8)  # a picture in it
    cv2.rectangle(big, (600, 300), (1500, 800), (230, 230, 230), 3)
    (box,) = inset_boxes(big)[:1]
    slack = 2 * 1920 / SIDE  # two pixels of the copy searched
    assert all(abs(got - want) <= slack for got, want in zip(box, (300, 800, 600, 1500))), box
    small = np.full((360, 640, 3), 40, np.uint8)
    cv2.rectangle(small, (300, 150), (360, 190), (230, 230, 230), 2)
    assert inset_boxes(small) == []


def test_framed_blank_panel_is_no_inset():
    """A player's black pillarbox beside a portrait video is framed by straight edges too, but there
    is nothing in it: as a query view it matched every fade to black in the library, at full score."""
    _, portrait = frame_at(need_videos() / "portrait_keyboard_1080x1920_h264.mp4", 0.67)
    page = np.full((720, 1280, 3), 35, np.uint8)  # window chrome
    page[40:680, 40:1240] = 0  # the player's black picture area...
    page[40:680, 460:820] = cv2.resize(portrait, (360, 640), interpolation=cv2.INTER_AREA)  # ...and the video in it
    boxes = inset_boxes(page)
    assert boxes, "the player's picture area is framed"
    for box in boxes:
        assert crop(page, box).std() > 5, box
