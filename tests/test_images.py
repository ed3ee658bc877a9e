"""Query pictures: bars found on a thumbnail land within a thumbnail pixel of the true edge; blank
and tiny pictures are refused."""

from __future__ import annotations

import numpy as np
import pytest

from utils.errors import ImageError
from utils.images import _channel_mean, _line_stats, cut_borders, searchable


def picture(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_letterbox_and_pillarbox_are_cut_to_the_picture():
    frame = np.zeros((720, 1280, 3), np.uint8)
    frame[90:630, 160:1120] = picture(540, 960)
    core = cut_borders(frame)
    assert abs(core.shape[0] - 540) <= 16 and abs(core.shape[1] - 960) <= 16
    assert core.shape[0] >= 540 and core.shape[1] >= 960  # never into the picture


def test_grey_bars_and_small_images():
    frame = np.full((120, 160, 3), 128, np.uint8)
    frame[20:100, :] = picture(80, 160)
    assert cut_borders(frame).shape[:2] == (80, 160)


def test_flat_or_barless_images_are_left_alone():
    flat = np.full((200, 300, 3), 10, np.uint8)
    assert cut_borders(flat).shape == flat.shape
    full = picture(200, 300)
    assert cut_borders(full).shape == full.shape


@pytest.mark.parametrize("shape", [(90, 160), (91, 161), (1, 7)])
def test_border_statistics_are_numpys_numbers(shape):
    """The fast forms give exactly numpy's mean of the channels, line std and median (odd and even
    line lengths), so no border box moves when the arithmetic is cheaper."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb[: shape[0] // 2] //= 17  # runs of near-equal values, where the middle two of a line differ least
    grey = _channel_mean(rgb)
    assert grey.dtype == np.float32 and np.array_equal(grey, rgb.mean(axis=2, dtype=np.float32))
    for lines in (grey, grey.T):
        std, median = _line_stats(lines)
        assert np.array_equal(std, lines.std(axis=1))
        assert np.array_equal(median, np.median(lines, axis=1))


def test_blank_and_tiny_pictures_are_not_searchable():
    """A black or single-colour picture matches every fade of every video with a full score, and a
    picture a few pixels across has nothing to find: both are refused with one clear line."""
    for colour in (0, 128, 255):
        with pytest.raises(ImageError, match="blank"):
            searchable(np.full((270, 480, 3), colour, np.uint8), "q")
    noisy_black = np.clip(np.random.default_rng(1).normal(3, 0.8, (270, 480, 3)), 0, 255).astype(np.uint8)
    with pytest.raises(ImageError, match="blank"):
        searchable(noisy_black, "q")
    with pytest.raises(ImageError, match="8x8 is too small"):
        searchable(picture(8, 8), "q")
    dark_scene = np.zeros((270, 480, 3), np.uint8)
    dark_scene[100:170, 200:280] = 40  # a dim shape in the dark is still a picture
    assert searchable(dark_scene, "q") is dark_scene
    assert searchable(picture(200, 300), "q").shape == (200, 300, 3)

