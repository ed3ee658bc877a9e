"""Frames and query images -> the tensor the EfficientNet-Lite0 ONNX model expects.

One function shared by ingestion, search and ``code/model/export.py`` (calibration), so the
int8 model is calibrated on exactly the pixels it sees at run time and a query image and a
keyframe of the same picture get the same input.

Why these choices:
- the *whole* frame is resized to a square, no centre crop: a copy may be cropped or letter-boxed
  differently, and a centre crop would throw away up to 44 % of a 16:9 frame's content;
- ``cv2.INTER_AREA`` is the anti-aliased filter for downscaling (frames are almost always larger
  than 224 px), cheaper than a Gaussian blur + resize and stable under re-encoding noise;
- ``(x - 127) / 128`` is the normalisation the Lite models were trained with (TF-Lite
  ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``), not the ImageNet mean/std of the B0..B7 models.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .errors import ImageError

MEAN = 127.0
STD = 128.0


def to_model_input(images: Sequence[np.ndarray], size: int = 224, out: np.ndarray | None = None) -> np.ndarray:
    """Stack HxWx3 uint8 RGB images of any size into an NCHW float32 batch of ``size`` x ``size``.

    ``out`` (len(images), 3, size, size) float32, if given, receives the batch: threads preparing
    slices of one batch then write straight into it, with no copy to join them.
    Raises :class:`ImageError` naming the offending image if one is not HxWx3 uint8 or is empty.
    """
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            shape, dtype = getattr(img, "shape", None), getattr(img, "dtype", type(img).__name__)
            raise ImageError(f"image {i}: expected an HxWx3 uint8 RGB array, got shape {shape} dtype {dtype}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ImageError(f"image {i}: empty ({img.shape[1]}x{img.shape[0]} pixels)")
        if img.shape[:2] == (size, size):
            batch[i] = img
        else:
            cv2.resize(img, (size, size), dst=batch[i], interpolation=cv2.INTER_AREA)
    if out is None:
        out = batch.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    else:
        np.copyto(out, batch.transpose(0, 3, 1, 2))
    out -= MEAN
    out *= 1.0 / STD  # exact: 1/128 is a power of two
    return out
