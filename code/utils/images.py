"""Query images: reading what users send, and cleaning it up before it is embedded.

Screenshots arrive rotated by EXIF, huge, truncated, letterboxed or pillarboxed. Reading is strict
(one ImageError line for anything unusable, with limits checked before decoding a pixel) and the
clean-up cuts uniform borders the way trace.moe's cutBorders does, because black bars otherwise
dominate a whole-frame descriptor.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Config
from .errors import ImageError, InputError
from .paths import files_under
from .video import VIDEO_EXTENSIONS, frames_between

BORDER_STD = 6.0  # a row/column with luma std under this is flat
BORDER_DELTA = 12.0  # ...and within this of the edge colour belongs to the border
MIN_KEEP = 0.3  # never cut more than 70% of a side: a flat image is a flat image
THUMB_WIDTH = 160  # borders are found on a thumbnail this wide
MIN_SIDE = 16  # a picture narrower or lower than this has nothing to search for (and breaks resizing)
BLANK_STD = 2.0  # a picture whose luma varies less than this (0-255) is one flat colour
IMAGE_EXTENSIONS = frozenset(".png .jpg .jpeg .webp .bmp .tif .tiff .gif".split())  # picked up inside folders


def expand_folders(refs: list[str]) -> tuple[list[str], list[str]]:
    """Pictures named by the user, with each folder replaced by the image files under it; and an error
    message for each folder holding none (a file named explicitly is taken whatever its extension)."""
    out, errors = [], []
    for ref in refs:
        if not Path(ref).is_dir():
            out.append(ref)
            continue
        found = [str(f) for f in files_under(Path(ref), IMAGE_EXTENSIONS)]
        if not found:
            errors.append(f"{ref}: no image files in this folder ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        out += found
    return out, errors


def read_image(path: str | Path, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, upright per its EXIF orientation."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    if size == 0:
        raise ImageError(f"{p}: empty file (0 bytes)")
    if size > max_bytes:
        raise ImageError(f"{p}: {size} bytes is over the limit of {max_bytes} (search.max_image_bytes)")
    try:
        with Image.open(p) as im:
            _check_size(im.width, im.height, str(p))  # before decoding a pixel
            if im.width * im.height > max_pixels:
                raise ImageError(f"{p}: {im.width}x{im.height} is over the limit of {max_pixels} pixels "
                                 "(search.max_image_pixels)")
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image (or a format Pillow cannot read)") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{p}: truncated or corrupt image ({exc})") from exc
    return np.asarray(rgb)


def load_picture(ref: str, cfg: Config) -> np.ndarray:
    """A picture a user names, as RGB: an image file, or ``VIDEO@SECONDS`` for the frame a video shows
    at that time (Search and Similarity take both)."""
    path, sep, at = ref.rpartition("@")
    if sep and Path(path).suffix.lower() in VIDEO_EXTENSIONS:
        try:
            t = float(at)
        except ValueError:
            t = math.nan
        if not math.isfinite(t):
            raise InputError(f"{ref}: VIDEO@SECONDS needs a number of seconds after '@'")
        frames = frames_between(Path(path), max(0.0, t - 0.5), t, max(cfg.keyframes.image_max_side, 1280))
        if not frames:
            raise InputError(f"{ref}: no frame at {t:.2f} s in {path}")
        return frames[-1][1]
    if Path(ref).suffix.lower() in VIDEO_EXTENSIONS and Path(ref).is_file():
        raise InputError(f"{ref}: a video; name one of its frames as {ref}@SECONDS")
    return read_image(ref, cfg.search.max_image_bytes, cfg.search.max_image_pixels)


def searchable(rgb: np.ndarray, name: str) -> np.ndarray:
    """``rgb``, unless nothing can be found from it: under MIN_SIDE pixels on a side, or one flat colour
    (a black or blank picture matches every fade and blank frame of every video, with full scores)."""
    _check_size(rgb.shape[1], rgb.shape[0], name)
    if luma_spread(rgb) < BLANK_STD:
        raise ImageError(f"{name}: the picture is blank (one flat colour): every fade and blank frame matches it")
    return rgb


def luma_spread(rgb: np.ndarray) -> float:
    """How much a picture varies: the luma standard deviation (0-255) of a 64 x 36 thumbnail, blind to
    noise and detail (a blank frame, a fade and a solid title card score near 0)."""
    return float(cv2.cvtColor(cv2.resize(rgb, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).std())


def _check_size(w: int, h: int, name: str) -> None:
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name}: {w}x{h} is too small to search (under {MIN_SIDE} pixels on a side)")


def border_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the picture inside flat bars (letterbox, pillarbox, frames).

    Decided on a 160-px-wide thumbnail: the per-line statistics are what costs, and a thumbnail
    finds the same bars to within a thumbnail pixel, several times faster. It runs on every keyframe
    embedded and every query, so its arithmetic is the cheap form of the same numbers."""
    h, w = rgb.shape[:2]
    small = rgb if w <= THUMB_WIDTH else cv2.resize(
        rgb, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    grey = _channel_mean(small)
    sh, sw = grey.shape
    rows, cols = _line_stats(grey), _line_stats(grey.T)
    top, bottom = _flat_run(*rows), _flat_run(*(r[::-1] for r in rows))
    left, right = _flat_run(*cols), _flat_run(*(c[::-1] for c in cols))
    if sh - top - bottom < sh * MIN_KEEP or sw - left - right < sw * MIN_KEEP:
        return 0, h, 0, w
    sy, sx = h / sh, w / sw
    return round(top * sy), h - round(bottom * sy), round(left * sx), w - round(right * sx)


def cut_borders(rgb: np.ndarray) -> np.ndarray:
    """Crop flat bars (letterbox, pillarbox, solid frames) from the image's edges."""
    top, bottom, left, right = border_box(rgb)
    return rgb[top:bottom, left:right]


def read_keyframe(path: str) -> np.ndarray:
    """A stored keyframe as it is embedded: RGB with flat borders cut, exactly as queries are.

    A missing file is drift between disk and catalogue."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"keyframe image missing or unreadable: {path} (run Check.py --repair)")
    return cut_borders(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def _channel_mean(rgb: np.ndarray) -> np.ndarray:
    """The mean of the three channels as float32: the same values as ``rgb.mean(axis=2)`` (a sum of three
    bytes is exact in float32), without numpy's reduction over a 3-wide axis, which is 6x slower."""
    grey = rgb[..., 0].astype(np.float32)
    grey += rgb[..., 1]
    grey += rgb[..., 2]
    grey /= 3
    return grey


def _line_stats(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each line's (row's) luma std and median: computed once per axis, read from both ends.

    The median is read off a sorted copy: the same values as ``np.median`` (the middle one, or the
    mean of the middle two), in a third of its time on lines this short."""
    n = lines.shape[1]
    ordered = np.sort(lines, axis=1)
    middle = ordered[:, n // 2] if n % 2 else (ordered[:, n // 2 - 1] + ordered[:, n // 2]) / np.float32(2)
    return lines.std(axis=1), middle


def _flat_run(std: np.ndarray, median: np.ndarray) -> int:
    """How many leading lines (by their luma ``std`` and ``median``) are flat and of the first line's colour."""
    flat = (std < BORDER_STD) & (np.abs(median - median[0]) < BORDER_DELTA)
    if not flat[0]:
        return 0
    return int(np.argmin(flat)) if not flat.all() else len(flat)
