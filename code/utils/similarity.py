"""Similarity of two images or stored keyframes, by the same embedding Search uses."""

from __future__ import annotations

import numpy as np

from .catalogue import Catalogue, parse_id
from .config import Config
from .embedder import Embedder
from .errors import InputError
from .images import cut_borders, load_picture, read_image

KEYFRAME_PREFIX = "kf:"


def load_operand(cfg: Config, cat: Catalogue, ref: str) -> np.ndarray:
    """``kf:ID`` is a stored keyframe, anything else a picture as Search takes it (an image file or
    ``VIDEO@SECONDS``); returns RGB pixels."""
    if ref.startswith(KEYFRAME_PREFIX):
        try:
            kid = parse_id(ref[len(KEYFRAME_PREFIX):])
        except InputError:
            raise InputError(f"{ref}: a keyframe reference is kf:<number>") from None
        rows = cat.keyframes_by_id([kid])
        if kid not in rows:
            raise InputError(f"{ref}: no keyframe with id {kid} in the catalogue")
        return read_image(str(cfg.data_path / rows[kid].image_path), cfg.search.max_image_bytes,
                          cfg.search.max_image_pixels)
    return load_picture(ref, cfg)


def similarity(embedder: Embedder, a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the border-cut images' embeddings, in [-1, 1]."""
    va, vb = embedder.embed([cut_borders(a), cut_borders(b)])
    return float(np.dot(va, vb))
