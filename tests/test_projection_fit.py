"""The projection fit (code/model/fit_projection.py): it keeps the directions pictures differ in, not
the ones edits move, and its training edits are reproducible pictures."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "code" / "model" / "fit_projection.py"
_spec = importlib.util.spec_from_file_location("fit_projection", SCRIPT)
assert _spec is not None and _spec.loader is not None
fit_projection = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_projection)


def test_fit_keeps_what_tells_pictures_apart_over_what_edits_move() -> None:
    """Pictures spread most along axis 0, but edits move features along axis 0 even more: a PCA would
    keep axis 0; the fit keeps axis 1, along which pictures differ and edits barely move them."""
    rng = np.random.default_rng(0)
    pictures = rng.normal(0, [3.0, 1.0, 0.1, 0.1], (2000, 4))
    edits = rng.normal(0, [4.0, 0.1, 0.1, 0.1], (4000, 4))
    mean, components, kept = fit_projection.fit(pictures, edits, 1)
    assert components.shape == (4, 1) and mean.shape == (4,) and 0 < kept <= 1
    direction = np.abs(components[:, 0]) / np.linalg.norm(components[:, 0])
    assert int(np.argmax(direction)) == 1 and direction[1] > 0.95, direction
    _, top, _ = np.linalg.svd(pictures - pictures.mean(axis=0), full_matrices=False)
    assert int(np.argmax(np.abs(top[0]))) == 0  # what a PCA would have kept


def test_augment_makes_reproducible_pictures() -> None:
    image = (np.random.default_rng(1).random((90, 160, 3)) * 255).astype(np.uint8)
    first = [fit_projection.augment(image, random.Random(7)) for _ in range(2)]
    assert np.array_equal(first[0], first[1])
    for seed in range(20):
        out = fit_projection.augment(image, random.Random(seed))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and min(out.shape[:2]) >= 16
        assert out.flags.c_contiguous
