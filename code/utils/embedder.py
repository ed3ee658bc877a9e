"""Images -> L2-normalised EfficientNet-Lite0 embeddings with onnxruntime.

Why the checks: vectors from two different model files are not comparable, and nothing in a vector
store would notice the mix. So the ONNX file's sha256 must match ``model.json`` (written by
``code/model/export.py`` beside the files) before anything is embedded, and :attr:`Embedder.name`
and :attr:`Embedder.sha256` are there to be recorded with the vectors.

Why two variants: the int8 model is 3.6x smaller and about twice as fast on a CPU, at a mean
cosine of about 0.98 to the float one; on a GPU the float model is the fast and exact choice.
``variant: auto`` picks by where the session actually runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Sequence

import numpy as np
import onnxruntime as ort

from .errors import ModelError
from .hashing import file_sha256
from .preprocess import to_model_input

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# cuDNN picks each convolution's algorithm per input shape. Its exhaustive search (onnxruntime's
# default) costs 0.7-1.4 s the first time a batch size is seen: a query (2 images) or a short last
# batch pays it. The heuristic choice costs 0.1-0.5 s and ran as fast afterwards on an H200
# (6,335 against 6,432 images/s at batch 32; bench/results/gpu.md).
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}
METADATA_FILE = "model.json"


class _Entry(NamedTuple):
    """What the runtime needs from one ``model.json`` variant."""

    name: str  # model-variant, e.g. efficientnet_lite0-int8
    sha256: str
    dim: int
    input: str
    output: str
    size: int  # square input side in pixels


def _metadata(path: Path) -> _Entry:
    """The ``model.json`` entry for ``path``, read from beside it."""
    meta_path = path.parent / METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for variant, e in meta["variants"].items():
            if e["file"] == path.name:
                return _Entry(f"{meta['model']}-{variant}", str(e["sha256"]).lower(), int(e["dim"]),
                              e["input"]["name"], e["output"]["name"], int(e["input"]["shape"][-1]))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ModelError(f"cannot read model metadata {meta_path}: {exc!r}") from exc
    raise ModelError(f"{meta_path} has no entry for {path.name}")


class Projection(NamedTuple):
    """A linear map applied after the model (PCA to fewer dimensions), checked like the model file."""

    name: str  # e.g. pca256
    sha256: str
    mean: np.ndarray  # (input_dim,)
    components: np.ndarray  # (input_dim, dim)

    @classmethod
    def load(cls, path: Path) -> Projection:
        """Load ``path`` after checking its sha256 against the ``projection`` entry of ``model.json``."""
        if not path.is_file():
            raise ModelError(f"projection file not found: {path} (run code/model/fit_projection.py "
                             "or set model.projection to '' for raw vectors)")
        meta_path = path.parent / METADATA_FILE
        try:
            entry = json.loads(meta_path.read_text(encoding="utf-8"))["projection"]
            listed, expected, name = entry["file"], str(entry["sha256"]).lower(), f"{entry['kind']}{int(entry['dim'])}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read the projection entry of {meta_path}: {exc!r}") from exc
        if listed != path.name:
            raise ModelError(f"{meta_path} describes projection {listed}, not {path.name}")
        sha = file_sha256(path)
        if sha != expected:
            raise ModelError(f"{path.name}: sha256 {sha[:12]}... differs from model.json's {expected[:12]}... "
                             "(re-fit it with code/model/fit_projection.py or restore it)")
        with np.load(path) as data:
            mean, components = data["mean"].astype(np.float32), data["components"].astype(np.float32)
        return cls(name, sha, mean, components)


def _providers(device: str) -> list[str]:
    """Execution providers to ask for; CUDA first with CPU behind it for ops CUDA lacks."""
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        if CUDA not in available:
            raise ModelError("model.device is 'cuda' but this onnxruntime has no CUDAExecutionProvider "
                             "(install onnxruntime-gpu instead of onnxruntime, or set model.device: cpu)")
        return [CUDA, CPU]
    if device == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    raise ModelError(f"unknown device {device!r} (use auto, cpu or cuda)")


class Embedder:
    """One ONNX embedding model, loaded once; ``embed`` turns RGB images into unit vectors.

    Attributes: ``name`` (e.g. ``efficientnet_lite0-int8``), ``sha256`` of the file, ``dim`` of the
    vectors, ``provider`` the session runs on, ``path`` of the file.
    """

    def __init__(self, model_path: Path, device: str = "auto", batch_size: int = 32, threads: int = 0,
                 expected_sha256: str | None = None, projection: Path | None = None,
                 preprocess_threads: int = 0) -> None:
        """Verify and load ``model_path`` (and the ``projection`` applied after it, if any).

        ``expected_sha256`` overrides the hash in ``model.json``, e.g. to insist on the model an
        existing index was built with. ``threads`` = 0 lets onnxruntime use every core.
        ``preprocess_threads`` resize the next batch while the model runs this one; 0 = as many as
        the device needs: on a GPU the model outruns one resizing thread several times over, on a
        CPU one thread beside onnxruntime's keeps it fed.
        ``name``, ``sha256`` and ``dim`` then describe the vectors as stored: with a projection the
        name gets its suffix (``-pca256``) and the sha256 covers both files.
        Raises :class:`ModelError` if a file is missing, its hash differs, or the device is unusable.
        """
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path} "
                             "(run code/model/export.py or fix model.cpu_path / model.gpu_path)")
        if batch_size < 1:
            raise ModelError(f"batch_size must be >= 1, got {batch_size}")
        if preprocess_threads < 0:
            raise ModelError(f"preprocess_threads must be >= 0, got {preprocess_threads}")
        entry = _metadata(self.path)
        self.sha256 = file_sha256(self.path)
        expected = (expected_sha256 or entry.sha256).lower()
        if self.sha256 != expected:
            raise ModelError(f"{self.path.name}: sha256 {self.sha256[:12]}... differs from the expected "
                             f"{expected[:12]}... (a modified or different model; re-export or restore it)")
        self.file_sha256 = self.sha256
        self.name = entry.name
        self.raw_dim = self.dim = entry.dim
        self.projection = Projection.load(Path(projection)) if projection else None
        if self.projection is not None:
            if self.projection.mean.shape != (entry.dim,):
                raise ModelError(f"projection {self.projection.name} expects {self.projection.mean.shape[0]}-d "
                                 f"features, {self.path.name} gives {entry.dim}-d")
            self.name = f"{entry.name}-{self.projection.name}"
            self.sha256 = hashlib.sha256(f"{self.sha256}:{self.projection.sha256}".encode()).hexdigest()
            self.dim = int(self.projection.components.shape[1])
        self.batch_size = batch_size
        self._input, self._output, self._size = entry.input, entry.output, entry.size

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # no busy-waiting between runs: the decoder, OpenCV and numpy share these cores with the model
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [(p, CUDA_OPTIONS) if p == CUDA else p for p in _providers(device)]
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt graphs
            raise ModelError(f"cannot load {self.path.name}: {exc}") from exc
        self.provider = self._session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise ModelError("model.device is 'cuda' but the CUDA provider failed to start "
                             "(check the CUDA/cuDNN libraries onnxruntime-gpu needs, or set model.device: cpu)")
        self.preprocess_threads = preprocess_threads or (min(8, os.cpu_count() or 1) if self.provider == CUDA else 1)
        self._pool: ThreadPoolExecutor | None = None  # started by the first call of more than one batch
        log.info("loaded %s (%s) on %s", self.name, self.sha256[:12], self.provider)

    @classmethod
    def from_config(cls, cfg: Config) -> Embedder:
        """The embedder ``cfg.model`` asks for.

        ``variant: auto`` means fp32 (``gpu_path``) when the session runs on CUDA, int8
        (``cpu_path``) otherwise. With ``device: auto``, a CUDA provider that is listed but fails to
        start falls back to the int8 model on the CPU rather than running fp32 slowly there.
        """
        m = cfg.model
        if m.variant not in ("auto", "int8", "fp32"):
            raise ModelError(f"unknown model variant {m.variant!r} (use auto, int8 or fp32)")
        kwargs = {"batch_size": m.batch_size, "threads": m.threads, "preprocess_threads": m.preprocess_threads,
                  "projection": cfg.resolve(m.projection) if m.projection else None}
        cpu_path, gpu_path = cfg.resolve(m.cpu_path), cfg.resolve(m.gpu_path)
        if m.variant != "auto":
            return cls(gpu_path if m.variant == "fp32" else cpu_path, device=m.device, **kwargs)
        if m.device == "cpu" or CUDA not in _providers(m.device):
            return cls(cpu_path, device="cpu", **kwargs)
        embedder = cls(gpu_path, device=m.device, **kwargs)
        if embedder.provider == CUDA:
            return embedder
        log.warning("CUDA provider did not start; using the int8 model on the CPU")
        return cls(cpu_path, device="cpu", **kwargs)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 L2-normalised rows for HxWx3 uint8 RGB images, run batch_size at a time:
        the model's features, projected when a projection is configured."""
        out = self.embed_raw(images)
        if self.projection is not None:
            # einsum, not @: a matmul this small is 0.1 ms, but BLAS wakes its own threads for it,
            # which wait behind onnxruntime's and OpenCV's under load (measured 6 ms a call in Search)
            out = np.einsum("ij,jk->ik", out - self.projection.mean, self.projection.components)
            _normalise(out)
        return out

    def embed_raw(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, raw_dim) L2-normalised model features, before any projection (what a projection is fitted on).

        Only ``embedding`` is fetched; onnxruntime still runs the 1000-class head, which costs
        about 0.3 % of the network, so one file serves both embedding and the classification check.
        """
        return _normalise(self._run(self._output, self.raw_dim, images))

    def classify(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1000) ImageNet logits: a sanity check that the weights see pictures, not used for search."""
        shapes = {o.name: o.shape for o in self._session.get_outputs()}
        if "logits" not in shapes:
            raise ModelError(f"{self.path.name} has no 'logits' output")
        return self._run("logits", int(shapes["logits"][-1]), images)

    def _run(self, output: str, width: int, images: Sequence[np.ndarray]) -> np.ndarray:
        """(n, width) float32 of one model output, running batch_size images at a time; while the model
        runs one batch, the pool prepares the next (onnxruntime and OpenCV both release the GIL)."""
        out = np.empty((len(images), width), dtype=np.float32)
        if len(images) <= self.batch_size:  # a query: nothing to overlap
            if len(images):
                out[:] = self._session.run([output], {self._input: to_model_input(images, self._size)})[0]
            return out
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.preprocess_threads, thread_name_prefix="p4v-preprocess")
        ahead = self._prepare(self._pool, images[:self.batch_size])
        for start in range(0, len(images), self.batch_size):
            batch, parts = ahead
            for part in parts:
                part.result()  # re-raises an ImageError of that slice
            if start + self.batch_size < len(images):
                ahead = self._prepare(self._pool, images[start + self.batch_size:start + 2 * self.batch_size])
            out[start:start + len(batch)] = self._session.run([output], {self._input: batch})[0]
        return out

    def _prepare(self, pool: ThreadPoolExecutor, images: Sequence[np.ndarray]
                 ) -> tuple[np.ndarray, list[Future[np.ndarray]]]:
        """Start preparing one batch: a slice per pool thread, each written into the batch in place."""
        batch = np.empty((len(images), 3, self._size, self._size), dtype=np.float32)
        step = -(-len(images) // self.preprocess_threads)
        return batch, [pool.submit(to_model_input, images[s:s + step], self._size, batch[s:s + step])
                       for s in range(0, len(images), step)]


def _normalise(x: np.ndarray) -> np.ndarray:
    """Scale rows to unit length in place (cosine = dot product); returns ``x``."""
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x
