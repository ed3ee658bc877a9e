"""Fit the 256-d PCA projection that the embedder applies after the ONNX model, and record it in model.json.

    python code/model/fit_projection.py                       # fit on the shared clips, write + record
    python code/model/fit_projection.py --videos DIR --exclude a.mp4 b.mkv

Why a projection: the pooled EfficientNet-Lite0 features are 1280 floats (5 KB a keyframe). Their
energy sits in a few hundred directions, so a PCA to 256-d keeps the retrieval accuracy at 1 KB a
keyframe, makes the exact search of Milvus Lite five times cheaper (its cost is linear in the
dimension) and, by removing the mean, spreads unrelated pictures further apart in cosine (the
raw features share a large common component).

What it is fitted on: the keyframes Create.py would keep (with ``min_gap`` 0.25 s) from the given videos (default: the shared
clips, minus the clips the accuracy harness holds out as negatives and unseen copies), each as is,
mirrored and as a centre 60 % crop, the views queries are made of. Only numpy and the shipped
int8/fp32 ONNX models are needed (no torch).

Writes ``efficientnet_lite0_pca256.npz`` (``mean`` [1280], ``components`` [1280, 256], float32)
beside this script and its sha256, dimension and provenance into ``model.json``; the runtime
refuses a projection file whose hash differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(MODEL_DIR.parent))  # code/
from utils.config import KeyframeConfig  # noqa: E402
from utils.embedder import METADATA_FILE, Embedder  # noqa: E402
from utils.hashing import file_sha256  # noqa: E402
from utils.keyframes import KeyframeExtractor  # noqa: E402

DEFAULT_VIDEOS = MODEL_DIR.parents[2] / "shared" / "data" / "videos"
OUT_NAME = "efficientnet_lite0_pca256.npz"
DIM = 256
FIT_MIN_GAP = 0.25  # denser than Create's default (0.5 s): more samples of moving scenes
# bench/eval_search.py keeps these out of its library (negatives and unseen copies): not fitted on either
DEFAULT_EXCLUDE = ("mdn_pig_480p_h264.mp4", "intel_asl_book_480p_h264.mkv", "blend_modes_1080p_h264.mp4",
                   "portrait_keyboard_1080x1920_h264.mp4", "mdn_rabbit_480p_vp8.webm", "mdn_flower_540p_vp8.webm",
                   "bbb_trim_5s_180p_vp9.webm", "spiral_1s_240p_mpeg4.avi")


def views(image: np.ndarray) -> list[np.ndarray]:
    """The frame, its mirror and its centre 60 % crop: what queries look like."""
    h, w = image.shape[:2]
    dy, dx = int(h * 0.2), int(w * 0.2)
    return [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[dy:h - dy, dx:w - dx])]


def raw_features(videos: list[Path]) -> np.ndarray:
    """Unit-length 1280-d features of every view of every keyframe, from both model variants."""
    cfg = KeyframeConfig(min_gap=FIT_MIN_GAP)
    images: list[np.ndarray] = []
    for path in videos:
        with KeyframeExtractor(path, cfg) as extractor:
            for kf in extractor:
                images.extend(views(kf.image))
    feats = []
    for variant in ("fp32", "int8"):  # one projection serves both: fit on what each of them gives
        embedder = Embedder(MODEL_DIR / f"efficientnet_lite0_{variant}.onnx", device="cpu")
        feats.append(embedder.embed_raw(images))
    return np.concatenate(feats)


def fit(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, the top ``dim`` principal directions (columns) and the share of variance they keep."""
    mean = x.mean(axis=0)
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    explained = float((s[:dim] ** 2).sum() / (s ** 2).sum())
    return mean.astype(np.float32), np.ascontiguousarray(vt[:dim].T, dtype=np.float32), explained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of videos to fit on")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), help="file names to leave out")
    args = parser.parse_args(argv)
    videos = sorted(p for p in args.videos.iterdir() if p.is_file() and p.name not in set(args.exclude)
                    and p.suffix.lower() in {".mp4", ".mkv", ".webm", ".avi", ".ts", ".mov"})
    x = raw_features(videos)
    mean, components, explained = fit(x, DIM)
    out = MODEL_DIR / OUT_NAME
    np.savez(out, mean=mean, components=components)
    meta_path = MODEL_DIR / METADATA_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["projection"] = {
        "file": OUT_NAME, "sha256": file_sha256(out), "bytes": out.stat().st_size,
        "kind": "pca", "input_dim": int(mean.shape[0]), "dim": DIM,
        "apply": "x = raw / |raw|; y = (x - mean) @ components; y / |y|",
        "fitted_on": {"videos": [p.name for p in videos], "samples": int(len(x)),
                      "views": f"keyframes (Create.py, min_gap {FIT_MIN_GAP} s) as is, mirrored, centre 60 % crop; "
                               "fp32 and int8 features"},
        "explained_variance": round(explained, 4),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"{out.name}: {len(videos)} videos, {len(x)} samples, {DIM}-d keeps {explained:.1%} of the variance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
