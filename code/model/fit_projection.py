"""Fit the 256-d projection that the embedder applies after the ONNX model, and record it in model.json.

    python code/model/fit_projection.py                       # fit on the shared clips, write + record
    python code/model/fit_projection.py --videos DIR --exclude a.mp4 b.mkv

Why a projection: the pooled EfficientNet-Lite0 features are 1280 floats (5 KB a keyframe). Their
energy sits in a few hundred directions, so 256 dimensions keep the retrieval accuracy at 1 KB a
keyframe, make the exact search of Milvus Lite five times cheaper (its cost is linear in the
dimension) and, with the mean removed, spread unrelated pictures further apart in cosine (the raw
features share a large common component).

Why these 256 directions (linear discriminant analysis, as copy detection whitens descriptors): an
ImageNet network's features move as much under the edits users make (a crop, JPEG, a colour shift,
blur, noise, a subtitle) as between neighbouring moments of a video, and a PCA keeps the directions
of largest variance whatever moves them. So the fit also embeds each keyframe under random edits
(:func:`augment`, written apart from the accuracy harness's edits), whitens the directions those
edits move the features in, and keeps the 256 directions in which pictures differ most measured in
that whitened space: the edits' variance is divided out, the pictures' is kept.

What it is fitted on: the keyframes Create.py would keep (with ``min_gap`` 0.25 s) from the given
videos (default: the shared clips, minus the clips the accuracy harness holds out as negatives and
unseen copies), as is and mirrored (the pictures) and under AUGMENTS random edits each (the edits),
with the features of both the int8 and the fp32 model. Only numpy, OpenCV and the shipped ONNX
models are needed (no torch). Fitting on a library's own videos (``--videos``) fits it to that
footage; vectors made with another projection must then be made again (``Insert2Milvus.py --rebuild``).

Writes ``efficientnet_lite0_lda256.npz`` (``mean`` [1280], ``components`` [1280, 256], float32)
beside this script and its sha256, dimension and provenance into ``model.json``; the runtime
refuses a projection file whose hash differs.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

import cv2
import numpy as np

MODEL_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(MODEL_DIR.parent))  # code/
from utils.config import KeyframeConfig  # noqa: E402
from utils.embedder import METADATA_FILE, Embedder  # noqa: E402
from utils.hashing import file_sha256  # noqa: E402
from utils.images import cut_borders  # noqa: E402
from utils.keyframes import KeyframeExtractor  # noqa: E402

DEFAULT_VIDEOS = MODEL_DIR.parents[2] / "shared" / "data" / "videos"
OUT_NAME = "efficientnet_lite0_lda256.npz"
DIM = 256
AUGMENTS = 4  # random edits of each keyframe
REGULARISE = 0.3  # added to the edits' covariance, as a share of its mean eigenvalue: directions no edit moved are not blown up
SEED = 1234
FIT_MIN_GAP = 0.25  # denser than Create's default (0.5 s): more samples of moving scenes
# bench/eval_search.py keeps these out of its library (negatives and unseen copies): not fitted on either
DEFAULT_EXCLUDE = ("mdn_pig_480p_h264.mp4", "intel_asl_book_480p_h264.mkv", "blend_modes_1080p_h264.mp4",
                   "portrait_keyboard_1080x1920_h264.mp4", "mdn_rabbit_480p_vp8.webm", "mdn_flower_540p_vp8.webm",
                   "bbb_trim_5s_180p_vp9.webm", "spiral_1s_240p_mpeg4.avi")


def augment(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """One to three random edits of the kinds users send: crop, downscale + heavy JPEG, colour,
    blur + noise, grey, text, a small rotation."""
    out = image
    for edit in rng.sample(["crop", "jpeg", "colour", "blur", "grey", "text", "rotate"], rng.randint(1, 3)):
        h, w = out.shape[:2]
        if edit == "crop":
            area, aspect = rng.uniform(0.35, 0.9), rng.uniform(0.75, 1.33)
            cw, ch = min(w, int(w * math.sqrt(area * aspect))), min(h, int(h * math.sqrt(area / aspect)))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            out = out[y:y + ch, x:x + cw]
        elif edit == "jpeg":
            scale = rng.uniform(0.25, 0.7)
            small = cv2.resize(out, (max(16, int(w * scale)), max(16, int(h * scale))), interpolation=cv2.INTER_AREA)
            _, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, rng.randint(8, 40)])
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        elif edit == "colour":
            f = out.astype(np.float32) / 255
            f = np.clip((f - 0.5) * rng.uniform(0.6, 1.5) + 0.5 + rng.uniform(-0.25, 0.25), 0, 1) ** rng.uniform(0.6, 1.6)
            grey = f.mean(axis=2, keepdims=True)
            out = (np.clip(grey + (f - grey) * rng.uniform(0.3, 1.8), 0, 1) * 255).astype(np.uint8)
        elif edit == "blur":
            k = rng.choice([3, 5, 7])
            noise = np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(3, 18), out.shape)
            out = np.clip(cv2.GaussianBlur(out, (k, k), 0) + noise, 0, 255).astype(np.uint8)
        elif edit == "grey":
            out = np.repeat(cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        elif edit == "text":
            out = np.ascontiguousarray(out).copy()
            for _ in range(rng.randint(1, 2)):
                size = rng.uniform(0.4, 1.2) * w / 640
                text = "".join(rng.choice("abcdefghijklmnop ") for _ in range(rng.randint(6, 20)))
                cv2.putText(out, text, (rng.randint(0, w // 3), rng.randint(h // 2, h - 5)), cv2.FONT_HERSHEY_DUPLEX,
                            size, (255, 255, rng.choice([0, 255])), max(1, int(2 * size)))
        else:
            m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-12, 12), rng.uniform(1.0, 1.25))
            out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(out)


def raw_features(videos: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length 1280-d features from both model variants: of the pictures (each keyframe as is and
    mirrored), and of the edits (each augmented keyframe's features minus its own unedited ones).
    Keyframes are taken a video at a time, so memory holds one video's frames, not the library's."""
    cfg = KeyframeConfig(min_gap=FIT_MIN_GAP)
    rng = random.Random(SEED)
    # one projection serves both variants: fit on what each of them gives
    embedders = [Embedder(MODEL_DIR / f"efficientnet_lite0_{variant}.onnx", device="cpu") for variant in ("fp32", "int8")]
    pictures: list[np.ndarray] = []
    edits: list[np.ndarray] = []
    for path in videos:
        with KeyframeExtractor(path, cfg) as extractor:
            keyframes = [cut_borders(kf.image) for kf in extractor]
        edited = [cut_borders(augment(image, rng)) for image in keyframes for _ in range(AUGMENTS)]
        mirrored = [np.ascontiguousarray(image[:, ::-1]) for image in keyframes]
        for embedder in embedders:
            clean = embedder.embed_raw(keyframes)
            pictures += [clean, embedder.embed_raw(mirrored)]
            edits.append(embedder.embed_raw(edited) - np.repeat(clean, AUGMENTS, axis=0))
    return np.concatenate(pictures), np.concatenate(edits)


def fit(pictures: np.ndarray, edits: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, the ``dim`` discriminant directions (columns) and the share of the pictures' variance,
    measured with the edits' variance divided out, that they keep.

    The edits' covariance (regularised) is whitened; the pictures' covariance in that space is
    diagonalised and its top directions kept, mapped back to feature space."""
    mean = pictures.mean(axis=0)
    centred = pictures - mean
    between = centred.T @ centred / len(centred)
    within = edits.T @ edits / len(edits)
    within += REGULARISE * np.trace(within) / len(within) * np.eye(len(within))
    w, v = np.linalg.eigh(within)
    whiten = v / np.sqrt(w)
    s, u = np.linalg.eigh(whiten.T @ between @ whiten)
    order = np.argsort(s)[::-1]
    explained = float(s[order[:dim]].sum() / s.sum())
    return mean.astype(np.float32), np.ascontiguousarray(whiten @ u[:, order[:dim]], dtype=np.float32), explained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder of videos to fit on")
    parser.add_argument("--exclude", nargs="*", default=list(DEFAULT_EXCLUDE), help="file names to leave out")
    args = parser.parse_args(argv)
    videos = sorted(p for p in args.videos.iterdir() if p.is_file() and p.name not in set(args.exclude)
                    and p.suffix.lower() in {".mp4", ".mkv", ".webm", ".avi", ".ts", ".mov"})
    pictures, edits = raw_features(videos)
    mean, components, explained = fit(pictures, edits, DIM)
    out = MODEL_DIR / OUT_NAME
    np.savez(out, mean=mean, components=components)
    meta_path = MODEL_DIR / METADATA_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["projection"] = {
        "file": OUT_NAME, "sha256": file_sha256(out), "bytes": out.stat().st_size,
        "kind": "lda", "input_dim": int(mean.shape[0]), "dim": DIM,
        "apply": "x = raw / |raw|; y = (x - mean) @ components; y / |y|",
        "fitted_on": {"videos": [p.name for p in videos], "pictures": int(len(pictures)), "edits": int(len(edits)),
                      "views": f"keyframes (Create.py, min_gap {FIT_MIN_GAP} s) as is and mirrored; each under "
                               f"{AUGMENTS} random edits (fit_projection.augment, seed {SEED}); fp32 and int8 features",
                      "regularise": REGULARISE},
        "explained_variance": round(explained, 4),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"{out.name}: {len(videos)} videos, {len(pictures)} pictures, {len(edits)} edits; {DIM}-d keeps "
          f"{explained:.1%} of the pictures' variance over the edits'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
