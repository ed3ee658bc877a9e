"""The ONNX embedder on real frames: determinism, batching, similarity, classification, refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import onnxruntime as ort
import pytest

from utils.config import Config
from utils.embedder import Embedder
from utils.errors import ImageError, ModelError

MODEL_DIR = Path(__file__).resolve().parents[1] / "code" / "model"
MODELS = {v: MODEL_DIR / f"efficientnet_lite0_{v}.onnx" for v in ("int8", "fp32")}
PROJECTION = MODEL_DIR / "efficientnet_lite0_lda256.npz"
COCKATOO = 89  # ImageNet 'sulphur-crested cockatoo'


def frames_at(path: Path, times: list[float]) -> list[np.ndarray]:
    """RGB frames at the first frame time >= each of ``times`` (ascending), by one sequential decode."""
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= times[len(out)]:
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == len(times):
                    break
    assert len(out) == len(times), f"{path.name}: only {len(out)} of {len(times)} frames decoded"
    return out


@pytest.fixture(scope="module")
def shots(videos: Path) -> dict[str, list[np.ndarray]]:
    """Two frames 0.2 s apart (one shot) from each of several clips, two of them shot on the same table."""
    names = ["bbb_5s_720p_h264.mp4", "mdn_frog_480p_h264.mp4", "mdn_pig_480p_h264.mp4",
             "intel_asl_book_480p_h264.mkv", "sintel_trailer_480p_h264.mp4"]
    return {n: frames_at(videos / n, [2.0, 2.2]) for n in names}


@pytest.fixture(scope="module", params=["int8", "fp32", "int8+projection"])
def embedder(request: pytest.FixtureRequest) -> Embedder:
    variant, _, projected = request.param.partition("+")
    return Embedder(MODELS[variant], device="cpu", batch_size=4, projection=PROJECTION if projected else None)


def test_deterministic_unit_rows(embedder: Embedder, shots: dict[str, list[np.ndarray]]) -> None:
    frames = [f for pair in shots.values() for f in pair]
    a, b = embedder.embed(frames), embedder.embed(frames)
    assert a.shape == (len(frames), embedder.dim) == (10, 256 if embedder.projection else 1280)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_alone_equals_in_batch(embedder: Embedder, shots: dict[str, list[np.ndarray]]) -> None:
    """Batch size 4 over 10 frames gives a short last batch too; no row may depend on its neighbours."""
    frames = [f for pair in shots.values() for f in pair]
    batched = embedder.embed(frames)
    for i in (0, 5, 9):
        np.testing.assert_allclose(embedder.embed([frames[i]])[0], batched[i], rtol=0, atol=1e-5)


def test_preprocessing_threads_change_nothing(shots: dict[str, list[np.ndarray]]) -> None:
    """Three threads cut each batch of 4 into slices of 2 (and the last batch of 2 into slices of 1),
    written in place while the model runs the batch before: the rows must be those of one thread."""
    frames = [f for pair in shots.values() for f in pair]
    one, three = (Embedder(MODELS["int8"], device="cpu", batch_size=4, preprocess_threads=k) for k in (1, 3))
    assert three.preprocess_threads == 3
    np.testing.assert_allclose(three.embed(frames), one.embed(frames), rtol=0, atol=1e-6)
    with pytest.raises(ModelError, match="preprocess_threads must be >= 0"):
        Embedder(MODELS["int8"], device="cpu", preprocess_threads=-1)


def test_bad_image_in_a_later_batch_is_named(shots: dict[str, list[np.ndarray]]) -> None:
    """An image the pool rejects while the model runs an earlier batch still stops the call with its reason."""
    frames = [f for pair in shots.values() for f in pair]
    frames[6] = frames[6][..., 0]  # greyscale: HxW, not HxWx3
    with pytest.raises(ImageError, match="expected an HxWx3 uint8 RGB array"):
        Embedder(MODELS["int8"], device="cpu", batch_size=4, preprocess_threads=2).embed(frames)


def test_same_shot_closer_than_other_videos(embedder: Embedder, shots: dict[str, list[np.ndarray]]) -> None:
    vecs = {n: embedder.embed(pair) for n, pair in shots.items()}
    for name, (first, second) in vecs.items():
        same = float(first @ second)
        other = max(float(first @ v) for n, pair in vecs.items() if n != name for v in pair)
        assert same > other + 0.1, f"{name}: same shot {same:.3f} vs other video {other:.3f}"


def test_cockatoo_classifies(videos: Path) -> None:
    fp32 = Embedder(MODELS["fp32"], device="cpu")
    logits = fp32.classify(frames_at(videos / "cockatoo_720p_h264.mp4", [9.5, 10.5, 11.5, 12.5]))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert all(COCKATOO in row for row in top5), top5


def test_attributes() -> None:
    e = Embedder(MODELS["int8"], device="cpu")
    assert (e.name, e.dim, e.provider, e.path) == ("efficientnet_lite0-int8", 1280, "CPUExecutionProvider",
                                                   MODELS["int8"])
    assert len(e.sha256) == 64
    assert e.embed([]).shape == (0, 1280)


def test_from_config_picks_int8_on_cpu() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available: variant auto picks fp32 here")
    e = Embedder.from_config(Config())
    assert (e.name, e.dim) == ("efficientnet_lite0-int8-lda256", 256)


def test_projection_identity_and_output(shots: dict[str, list[np.ndarray]]) -> None:
    """The stored vectors' identity covers model and projection: either file changing changes it."""
    raw = Embedder(MODELS["int8"], device="cpu")
    lda = Embedder(MODELS["int8"], device="cpu", projection=PROJECTION)
    assert (lda.name, lda.dim, lda.raw_dim) == ("efficientnet_lite0-int8-lda256", 256, 1280)
    assert lda.file_sha256 == raw.sha256 == raw.file_sha256 and lda.sha256 not in (raw.sha256, "")
    frames = [f for pair in shots.values() for f in pair]
    x = raw.embed(frames)
    np.testing.assert_allclose(lda.embed_raw(frames), x, atol=1e-6)
    y = (x - lda.projection.mean) @ lda.projection.components
    np.testing.assert_allclose(lda.embed(frames), y / np.linalg.norm(y, axis=1, keepdims=True), atol=1e-5)


def test_modified_projection_refused(tmp_path: Path) -> None:
    copy = tmp_path / PROJECTION.name
    shutil.copy(PROJECTION, copy)
    shutil.copy(MODEL_DIR / "model.json", tmp_path / "model.json")
    with copy.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        Embedder(MODELS["int8"], projection=copy)
    with pytest.raises(ModelError, match="not found"):
        Embedder(MODELS["int8"], projection=tmp_path / "missing" / PROJECTION.name)


def test_wrong_sha256_refused() -> None:
    with pytest.raises(ModelError, match="sha256"):
        Embedder(MODELS["int8"], expected_sha256="0" * 64)


def test_modified_file_refused(tmp_path: Path) -> None:
    """The hash in model.json is checked, not just an explicitly passed one."""
    copy = tmp_path / MODELS["int8"].name
    shutil.copy(MODELS["int8"], copy)
    shutil.copy(MODEL_DIR / "model.json", tmp_path / "model.json")
    with copy.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match="sha256"):
        Embedder(copy)


def test_unlisted_file_refused(tmp_path: Path) -> None:
    copy = tmp_path / MODELS["int8"].name
    shutil.copy(MODELS["int8"], copy)
    with pytest.raises(ModelError, match="model.json"):
        Embedder(copy)


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Embedder(tmp_path / "efficientnet_lite0_int8.onnx")


def test_cuda_without_cuda_refused() -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available on this machine")
    with pytest.raises(ModelError, match="cuda"):
        Embedder(MODELS["int8"], device="cuda")
