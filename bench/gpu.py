#!/usr/bin/env python3
"""GPU check (issue 8): the CUDA path of the embedder, checked and timed in one short run.

    python bench/gpu.py --images DIR [--n 4096] [--out bench/results/gpu.md]

Why a separate script: a GPU machine is lent rarely and briefly, often without the servers, the
clips or PyAV that ``bench/perf.py`` needs. This needs only onnxruntime(-gpu), numpy, OpenCV and a
folder of keyframe JPEGs (any library's ``data/keyframes``), and answers three questions:

1. does the product's own choice (``Embedder.from_config`` with ``device: auto``,
   ``variant: auto``) land on the CUDA provider with the fp32 model;
2. are the CUDA vectors the CPU's (cosine of the same images, fp32 on both, and the CPU's int8);
3. how fast, per batch size: the model alone (inputs already on the host as NCHW float32), the
   CPU preprocessing alone (resize to 224 + normalise, one thread), and ``Embedder.embed`` end to
   end (what Insert2Milvus's embedding worker calls) with one preprocessing thread and with the
   GPU default (up to 8). Whichever is slowest is the embedding stage's bottleneck.

On a machine without a CUDA provider it times the CPU instead and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

from utils.config import load_config  # noqa: E402
from utils.embedder import CUDA, Embedder  # noqa: E402
from utils.images import read_keyframe  # noqa: E402
from utils.preprocess import to_model_input  # noqa: E402

BATCHES = (32, 64, 128, 256, 512)
CHECK_N = 64  # images compared between providers


def gpu_name() -> str:
    """The GPU as nvidia-smi names it, or '' where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def load_images(folder: Path, n: int) -> tuple[list[np.ndarray], dict[str, str]]:
    """``n`` RGB keyframes as embedded (borders cut), the folder's JPEGs repeated when it has fewer;
    also how fast they were read, by one thread and by as many as Insert2Milvus reads with on a GPU."""
    paths = [str(p) for p in sorted(folder.rglob("*.jpg"))[:n]]
    if not paths:
        raise SystemExit(f"no .jpg under {folder}")
    rates = {}
    for k in sorted({1, min(8, os.cpu_count() or 1)}):
        with ThreadPoolExecutor(k) as pool:
            seconds = best_of(lambda: list(pool.map(read_keyframe, paths)), repeat=1)
        rates[f"read_keyframe (JPEG decode + cut borders), {k} thread{'s' * (k > 1)}"] = \
            f"{len(paths) / seconds:,.0f} images/s"
    distinct = [read_keyframe(p) for p in paths]
    return [distinct[i % len(distinct)] for i in range(n)], {"images": f"{n} ({len(distinct)} distinct keyframes)",
                                                             **rates}


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls, after one untimed warm-up (allocations, cuDNN's algorithm search)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two sets of unit vectors."""
    return np.einsum("ij,ij->i", a, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder of keyframe JPEGs (searched recursively)")
    ap.add_argument("--n", type=int, default=4096, help="images per timed run (default 4096)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu.md"), help="markdown report path")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    cfg = load_config()
    images, read = load_images(Path(args.images), args.n)
    info = {"gpu": gpu_name() or "none", "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(), **read}

    chosen = Embedder.from_config(cfg)
    info["from_config"] = f"{chosen.name} on {chosen.provider}"
    device = "cuda" if chosen.provider == CUDA else "cpu"
    fp32, int8 = cfg.resolve(cfg.model.gpu_path), cfg.resolve(cfg.model.cpu_path)

    sample = images[:CHECK_N]
    ref = Embedder(fp32, device="cpu").embed_raw(sample)
    on_device = Embedder(fp32, device=device).embed_raw(sample)
    q8 = Embedder(int8, device="cpu").embed_raw(sample)
    check = {"fp32 on " + device + " vs fp32 on CPU, min cosine": float(cosines(on_device, ref).min()),
             "int8 on CPU vs fp32 on CPU, mean cosine": float(cosines(q8, ref).mean())}
    query = Embedder(fp32, device=device)  # fresh: its first batch of 2 meets cuDNN's per-shape set-up
    pair = [images[0], images[0][:, ::-1].copy()]  # a query and its mirror, as Search embeds them
    t0 = time.perf_counter()
    query.embed(pair)
    info["query (2 images), first call"] = f"{(time.perf_counter() - t0) * 1e3:.0f} ms"
    info["query (2 images), after"] = f"{best_of(lambda: query.embed(pair), repeat=20) * 1e3:.1f} ms"

    inputs = to_model_input(images, 224)
    threads = sorted({1, min(8, os.cpu_count() or 1)})
    rows = []
    for batch in BATCHES:
        emb = Embedder(fp32, device=device, batch_size=batch)
        session, name = emb._session, emb._session.get_inputs()[0].name  # the raw session: model time alone
        chunks = [inputs[s:s + batch] for s in range(0, len(inputs), batch)]
        parts = [images[s:s + batch] for s in range(0, len(images), batch)]
        row = {"batch": batch, "model": args.n / best_of(lambda: [session.run(None, {name: c}) for c in chunks]),
               "preprocess": args.n / best_of(lambda: [to_model_input(p, 224) for p in parts])}
        for k in threads:
            emb = Embedder(fp32, device=device, batch_size=batch, preprocess_threads=k)
            row[f"embed_{k}"] = args.n / best_of(lambda: emb.embed(images), repeat=2)
        rows.append(row)
        print(", ".join(f"{k} {v:,.0f}" for k, v in row.items()), flush=True)

    text = report(info, check, rows, device, threads)
    Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "check": check, "rows": rows}, indent=1), encoding="utf-8")
    print(text)
    return 0


def report(info: dict[str, Any], check: dict[str, float], rows: list[dict[str, Any]], device: str,
           threads: list[int]) -> str:
    """The markdown page: machine, correctness, and images/s per batch size."""
    lines = ["# GPU check: `python bench/gpu.py`", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [f"- {k}: {v:.5f}" for k, v in check.items()]
    lines += ["", f"Images per second, fp32 model on {device} (best of 3 runs of {info['images']}):", "",
              "| batch | model alone | preprocessing alone, 1 thread | "
              + " | ".join(f"Embedder.embed, {k} preprocessing thread{'s' * (k > 1)}" for k in threads) + " |",
              "| ---: " * (3 + len(threads)) + "|"]
    lines += [f"| {r['batch']} | {r['model']:,.0f} | {r['preprocess']:,.0f} | "
              + " | ".join(f"{r[f'embed_{k}']:,.0f}" for k in threads) + " |" for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
