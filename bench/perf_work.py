#!/usr/bin/env python3
"""Workers of bench/perf.py: each measurement runs in its own process so that its peak RSS is its own.

    python bench/perf_work.py JOB.json      (JOB names the worker and where to write its result)

Nothing here edits the project: stage times of the ingest are taken by wrapping the project's
functions with timers at run time (monkeypatching in this process only), never by changing code/.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # before the heavy imports: counted as the scripts' start-up

import functools  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "code"
sys.path.insert(0, str(CODE))

logging.disable(logging.WARNING)  # Lite's harmless create_index tracebacks, pymilvus' retries

SYNTH_CHUNK = 20_000
SIGMA_LIB = 0.5  # noise around a real keyframe embedding (norm ~0.5 before re-normalising: cos ~0.89)
SIGMA_QUERY = 0.3  # queries sit closer to their source than library siblings do
SEARCH_LIMIT = 50  # = search.candidates: what Searcher asks Milvus for
RECALL_K = 10


# ------------------------------------------------------------------------------------------- helpers
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_mem_mb(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of another process (the Milvus server, Milvus Lite's engine), in MB."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def lite_engine_mb() -> float:
    """Peak RSS (VmHWM, MB) of Milvus Lite's engine: Lite 2.5 runs Milvus as a ``milvus`` child process of
    this one (started by pymilvus on the first MilvusClient, stopped at exit), so the Python figure misses it.
    Summed over the live children (one per open Lite database)."""
    me = str(os.getpid())
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        comm, _, rest = text[text.find("(") + 1:].rpartition(")")
        if comm == "milvus" and rest.split()[1:2] == [me]:  # after "(comm)": state, ppid, ...
            total += proc_mem_mb(int(stat.parent.name)).get("VmHWM", 0.0)
    return total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def lat_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in seconds]
    return {"p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99), "mean_ms": float(np.mean(ms)) if ms else 0.0,
            "n": len(ms)}


def make_cfg(data_dir: Path, **env: str):
    """A config like the user's config.yaml, rooted in ``data_dir`` (SQLite catalogue, Milvus Lite there),
    with P4V_* overrides; the caller's own P4V_* variables are ignored so that a run is reproducible."""
    from utils.config import load_config

    environ = {k: v for k, v in os.environ.items() if not k.startswith("P4V_")}
    environ.update({"P4V_DATA_DIR": str(data_dir), "P4V_CATALOGUE__BACKEND": "sqlite", **env})
    return load_config(ROOT / "config.yaml", environ=environ)


def video_files(job: dict[str, Any]) -> list[Path]:
    return [Path(p) for p in job["files"]]


# ------------------------------------------------------------------------------- stage instrumentation
class Stages:
    """Seconds spent in wrapped functions, by stage; thread-safe (the embed job reads JPEGs in a pool)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._lock = threading.Lock()

    def add(self, key: str, dt: float) -> None:
        with self._lock:
            self.t[key] += dt
            self.n[key] += 1

    def _original(self, owner: Any, attr: str) -> Any:
        """owner.attr, or None (recorded as missing) when this version of the code has no such function."""
        orig = getattr(owner, attr, None)
        if orig is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{attr}")
        return orig

    def _set(self, owner: Any, attr: str, orig: Any, wrapper: Callable[..., Any]) -> None:
        static = inspect.getattr_static(owner, attr, None)
        functools.update_wrapper(wrapper, orig)
        setattr(owner, attr, staticmethod(wrapper) if isinstance(static, (classmethod, staticmethod)) else wrapper)

    def wrap(self, owner: Any, attr: str, key: str, on_result: Callable[..., None] | None = None) -> None:
        orig = self._original(owner, attr)
        if orig is None:
            return
        stages = self

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                result = orig(*a, **kw)
            finally:
                stages.add(key, time.perf_counter() - t0)
            if on_result is not None:
                on_result(result, *a, **kw)
            return result

        self._set(owner, attr, orig, wrapper)

    def wrap_gen(self, owner: Any, attr: str, key: str) -> None:
        """A generator method: the time of each ``next`` (the generator's own work) is counted."""
        orig = self._original(owner, attr)
        if orig is None:
            return
        stages = self

        def wrapper(*a: Any, **kw: Any) -> Any:
            it = iter(orig(*a, **kw))
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    stages.add(key, time.perf_counter() - t0)
                    return
                except BaseException:
                    stages.add(key, time.perf_counter() - t0)
                    raise
                stages.add(key, time.perf_counter() - t0)
                yield item

        self._set(owner, attr, orig, wrapper)


def instrument_ingest(st: Stages, capture: dict[str, list[Any]] | None) -> None:
    """Wrap the functions of ingest and the embed job with stage timers (this process only)."""
    import utils.catalogue as catalogue
    import utils.embed_job as embed_job
    import utils.embedder as embedder
    import utils.images as images
    import utils.ingest as ingest
    import utils.keyframes as keyframes
    import utils.vectorstore as vectorstore

    KE = keyframes.KeyframeExtractor
    st.wrap(KE, "__init__", "open_probe")
    st.wrap_gen(KE, "__iter__", "extract_iter")
    st.wrap_gen(KE, "_frames", "frames")
    st.wrap(keyframes, "luma_thumb", "thumb")
    st.wrap(keyframes, "to_rgb", "rgb")  # in ingest's writer thread, beside the decoder
    st.wrap(ingest, "write_jpeg", "jpeg_write")
    st.wrap(ingest, "content_hash", "hash")
    for name in ("video_by_hash", "claim_video", "finish_video", "touch", "discard_video", "keyframes",
                 "count_keyframes", "mark_embedded", "mark_all_unembedded"):
        st.wrap(catalogue.Catalogue, name, "catalogue")
    st.wrap(embed_job.Embedder, "from_config", "model_load")
    st.wrap(embedder, "to_model_input", "preprocess")
    st.wrap(embedder.Embedder, "embed", "embed_total")
    # flat-border detection and the stored ORB features: inside keyframe_for_model (reader threads, after
    # ingest) or in the EmbedSink's embedding thread
    local = threading.local()
    orig_read = getattr(embed_job, "keyframe_for_model", None)
    for name, key in (("cut_borders", "cut"), ("store_keyframe_features", "features")):
        orig = getattr(embed_job, name, None)
        if orig is None:
            st.missing.append(f"embed_job.{name}")
            continue

        def timed(*a: Any, _orig: Any = orig, _key: str = key, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _orig(*a, **kw)
            finally:
                st.add(f"{_key}_in_read" if getattr(local, "in_read", False) else f"{_key}_direct", time.perf_counter() - t0)
        setattr(embed_job, name, timed)
        if name == "cut_borders":
            images.cut_borders = timed  # read_keyframe's, inside keyframe_for_model
    if orig_read is not None:
        def read_keyframe(*a: Any, **kw: Any) -> Any:
            local.in_read = True
            t0 = time.perf_counter()
            try:
                return orig_read(*a, **kw)
            finally:
                local.in_read = False
                st.add("jpeg_read_cpu", time.perf_counter() - t0)
        embed_job.keyframe_for_model = read_keyframe
    sink_cls = getattr(embed_job, "EmbedSink", None)
    if sink_cls is not None:
        st.wrap(sink_cls, "commit", "sink_commit")
        st.wrap(sink_cls, "close", "sink_close")
    VS = vectorstore.VectorStore
    st.wrap(VS, "__init__", "milvus_open")
    for name in ("ensure", "check", "drop"):
        st.wrap(VS, name, "milvus_open")

    def keep_vectors(_res: Any, _self: Any, ids: Any, video_ids: Any, timestamps: Any, vectors: np.ndarray) -> None:
        if capture is not None:
            capture["ids"].extend(int(i) for i in ids)
            capture["video_ids"].extend(int(v) for v in video_ids)
            capture["timestamps"].extend(float(t) for t in timestamps)
            capture["vectors"].append(np.asarray(vectors, dtype=np.float32).copy())

    st.wrap(VS, "upsert", "milvus_insert", on_result=keep_vectors)
    st.wrap(VS, "flush", "milvus_flush_load")
    st.wrap(VS, "load", "milvus_flush_load")


def stage_table(st: Stages, wall: float) -> list[dict[str, Any]]:
    t = st.t
    read = t["jpeg_read_cpu"]  # the reader thread's busy time
    # split by the threads' own shares: imread + BGR->RGB vs cut_borders
    cut_frac = t["cut_in_read"] / read if read > 0 else 0.0
    features_frac = t["features_in_read"] / read if read > 0 else 0.0
    rows = [
        ("start-up (imports)", t["startup"]),
        ("open + probe", t["open_probe"]),
        ("file hash (sha256)", t["hash"]),
        ("demux + decode", t["frames"] - t["thumb"]),
        ("keyframe selection (luma thumbs, cut/dedup tests)", t["thumb"] + max(0.0, t["extract_iter"] - t["frames"] - t["rgb"])),
        ("colour conversion + resize (RGB, 480 px)", t["rgb"]),
        ("JPEG encode + write", t["jpeg_write"]),
        ("catalogue (SQLite)", t["catalogue"]),
        ("model load", t["model_load"]),
        ("JPEG read for embedding (imread, BGR->RGB)", read * (1 - cut_frac - features_frac)),
        ("border cut before embedding (cut_borders)", read * cut_frac + t["cut_direct"]),
        ("ORB features stored for Search (keyframes.store_features)", read * features_frac + t["features_direct"]),
        ("preprocess (224 px, normalise)", t["preprocess"]),
        ("embedding inference (onnxruntime)", t["embed_total"] - t["preprocess"]),
        ("Milvus open/create", t["milvus_open"]),
        ("Milvus upsert", t["milvus_insert"]),
        ("Milvus flush + load (index)", t["milvus_flush_load"]),
    ]
    total = sum(s for _, s in rows)
    rows.append(("other (unaccounted)", wall - total))
    return [{"stage": k, "s": round(max(s, 0.0) if k != "other (unaccounted)" else s, 3),
             "share": (s / wall if wall > 0 else 0.0)} for k, s in rows]


# ------------------------------------------------------------------------------------------- workers
def w_decode(job: dict[str, Any]) -> dict[str, Any]:
    """Bare PyAV decode: no conversion, no writing, no model. mode full | nonref | nonkey (the
    decoder's skip_frame: NONREF, with the loop filter skipped off keyframes, is how full mode decodes
    with keyframes.skip_nonref and skip_loop_filter) | keypackets
    (only the packets the container marks as keyframes reach the decoder, as keyframes.mode iframes
    reads them)."""
    import av

    from utils.video import probe

    mode = job["mode"]
    seconds = frames = 0.0
    ignored: list[str] = []
    t0 = time.perf_counter()
    for path in video_files(job):
        with av.open(str(path), metadata_errors="ignore") as c:
            info = probe(c, path)
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            if mode in ("nonref", "nonkey"):
                stream.codec_context.skip_frame = mode.upper()
            if mode == "nonref":  # as full mode decodes: keyframes.skip_loop_filter too
                stream.codec_context.options = {"skip_loop_filter": "nokey"}
            if mode == "keypackets":
                decoded = (f for p in c.demux(stream) if p.is_keyframe or p.size == 0 for f in p.decode())
            else:
                decoded = c.decode(stream)
            n = 0
            for _ in decoded:
                n += 1
            frames += n
            seconds += info.duration
            if mode == "nonkey" and n > 0.5 * max(1.0, info.duration * (info.fps or 25)):
                ignored.append(path.name)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "video_s": seconds, "frames": int(frames), "x_realtime": seconds / wall,
            "fps": frames / wall, "nonkey_ignored_by": ignored, "peak_rss_mb": peak_rss_mb()}


def w_extract(job: dict[str, Any]) -> dict[str, Any]:
    """KeyframeExtractor over the files, keyframes thrown away (no JPEG, no catalogue, no model)."""
    from utils.keyframes import KeyframeExtractor

    cfg = make_cfg(Path(job["tmp"]), P4V_KEYFRAMES__MODE=job.get("mode", "full"))
    kfs = 0
    seconds = 0.0
    t0 = time.perf_counter()
    for path in video_files(job):
        with KeyframeExtractor(path, cfg.keyframes) as ex:
            for _ in ex:
                kfs += 1
            seconds += ex.info.duration or ex.decoded_duration
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "video_s": seconds, "keyframes": kfs, "x_realtime": seconds / wall,
            "peak_rss_mb": peak_rss_mb()}


def w_ingest(job: dict[str, Any]) -> dict[str, Any]:
    """Ingest end to end on a fresh data dir, timed by stage. ``embed``:
    - ``after``: Create then Insert2Milvus (``ingest()`` then ``embed_library()``);
    - ``overlap``: Create --embed (the EmbedSink embeds in a thread while the video decodes, then
      ``embed_pending`` for anything left), as code/Create.py runs it."""
    st = Stages()
    capture: dict[str, list[Any]] = defaultdict(list)
    import utils.embed_job as ej
    from utils.catalogue import open_catalogue
    from utils.ingest import ingest
    st.t["startup"] = time.perf_counter() - T_START  # python's own start-up before T_START is not seen
    instrument_ingest(st, capture if job.get("capture") else None)
    cfg = make_cfg(Path(job["data_dir"]), P4V_KEYFRAMES__MODE=job["mode"],
                   P4V_KEYFRAMES__STORE_FEATURES="true" if job.get("store_features") else "false")
    paths = [str(p) for p in video_files(job)]
    overlap = job.get("embed") == "overlap"
    if overlap and not hasattr(ej, "EmbedSink"):
        raise RuntimeError("this version has no EmbedSink (Create --embed while decoding)")
    t0 = time.perf_counter()
    with open_catalogue(cfg) as cat:
        if overlap:
            from utils.embedder import Embedder
            from utils.vectorstore import VectorStore

            embedder = Embedder.from_config(cfg)
            sink = ej.EmbedSink(cfg, cat, embedder, lambda: VectorStore(cfg))  # as Create.py --embed
            try:
                summary = ingest(cfg, cat, paths, sink=sink)
                sink.close()
                t1 = time.perf_counter()
                emb = ej.embed_pending(cfg, cat, sink.ready(), embedder)
                embedded = emb.embedded + sink.embedded
            finally:
                sink.close_store()
        else:
            summary = ingest(cfg, cat, paths)
            t1 = time.perf_counter()
            emb = ej.embed_library(cfg, cat)
            embedded = emb.embedded
    t2 = time.perf_counter()
    wall = st.t["startup"] + (t2 - t0)
    s = summary.as_dict()
    s.pop("files", None)
    failed = [r.path + ": " + r.message for r in summary.results if r.status == "failed"]
    dim = None
    if job.get("capture") and capture["vectors"]:
        vectors = np.concatenate(capture["vectors"])
        dim = int(vectors.shape[1])
        np.savez(job["capture_path"], vectors=vectors, ids=np.asarray(capture["ids"]),
                 video_ids=np.asarray(capture["video_ids"]), timestamps=np.asarray(capture["timestamps"]))
    return {
        "wall_s": wall, "ingest_s": t1 - t0, "embed_s": t2 - t1, "startup_s": st.t["startup"], "embed": job.get("embed"),
        "video_s": summary.video_seconds, "keyframes": summary.keyframes, "embedded": embedded,
        "frames_decoded": sum(r.frames_decoded for r in summary.results),
        "x_realtime": summary.video_seconds / wall if wall else 0.0,
        "keyframes_per_s": summary.keyframes / wall if wall else 0.0,
        "summary": s, "failed": failed, "stages": stage_table(st, wall), "missing_hooks": st.missing,
        "raw_stage_s": dict(st.t), "sink_commit_s": st.t.get("sink_commit", 0.0), "peak_rss_mb": peak_rss_mb(),
        "lite_engine_mb": lite_engine_mb(), "vector_dim": dim,
    }


def _keyframe_images(data_dir: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    from utils.images import read_keyframe

    paths = sorted((data_dir / "keyframes").glob("*/*/*.jpg"))
    random.Random(seed).shuffle(paths)
    return [read_keyframe(str(p)) for p in paths[:n]]


def w_embed(job: dict[str, Any]) -> dict[str, Any]:
    """Embedding throughput alone: images already decoded in memory; preprocessing (resize 224) included."""
    import onnxruntime as ort

    from utils.embedder import Embedder
    from utils.preprocess import to_model_input

    images = _keyframe_images(Path(job["data_dir"]), max(job["n"]))
    out = []
    cases = [(v, "cpu", b) for v in ("int8", "fp32") for b in (1, 32)]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        cases += [("fp32", "cuda", 32), ("fp32", "cuda", 256)]
    for variant, device, batch in cases:
        path = ROOT / "code" / "model" / f"efficientnet_lite0_{variant}.onnx"
        try:
            emb = Embedder(path, device=device, batch_size=batch, threads=0)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            out.append({"variant": variant, "device": device, "batch": batch, "error": str(exc)})
            continue
        n = job["n"][0] if batch == 1 else job["n"][1]
        imgs = images[:n]
        emb.embed(imgs[: max(batch, 2)])  # warm-up (session init, allocations)
        t0 = time.perf_counter()
        emb.embed(imgs)
        dt = time.perf_counter() - t0
        t0 = time.perf_counter()
        for s in range(0, len(imgs), batch):
            to_model_input(imgs[s:s + batch], 224)
        pre = time.perf_counter() - t0
        out.append({"variant": variant, "device": device, "provider": emb.provider, "batch": batch, "n": len(imgs),
                    "images_per_s": len(imgs) / dt, "ms_per_image": dt / len(imgs) * 1e3,
                    "preprocess_share": pre / dt})
    return {"cases": out, "peak_rss_mb": peak_rss_mb()}


def _query_frames(files: list[Path], n: int, seed: int) -> list[tuple[str, float, np.ndarray]]:
    """Frames at random times of the library's videos (mostly not keyframes), as a user's screenshot."""
    from utils.video import frames_between, open_video, probe

    rng = random.Random(seed)
    out = []
    tries = 0
    while len(out) < n and tries < n * 4:
        tries += 1
        path = rng.choice(files)
        with open_video(path) as c:
            dur = probe(c, path).duration
        if dur < 1.0:
            continue
        t = rng.uniform(0.2, dur - 0.5)
        frames = frames_between(path, max(0.0, t - 0.3), t, 640)
        if frames:
            out.append((path.name, frames[-1][0], frames[-1][1]))
    return out


def _same_footage(answer: str, truth: str) -> bool:
    """Whether an answered video shows the query's footage: the video itself or another encode of it (the
    harness's copy groups, from MANIFEST.md), as bench/eval_search.py counts a right answer. An untouched
    frame of one encode matches its copies about as well, so a check by file name alone is a coin toss
    between them."""
    from eval_search import COPY_GROUPS

    return answer == truth or any(answer in g and truth in g for g in COPY_GROUPS)


def w_e2e(job: dict[str, Any]) -> dict[str, Any]:
    """Search on the real library (Lite): Searcher end to end (as configured, and with its optional expensive
    steps off), its parts, and the accuracy of the product's projected vectors against the raw model features."""
    import dataclasses

    import utils.search as search_mod
    from utils.catalogue import open_catalogue
    from utils.config import SearchConfig
    from utils.embedder import Embedder
    from utils.images import cut_borders
    from utils.vectorstore import VectorStore

    def views_of(rgb: np.ndarray) -> list[np.ndarray]:
        qv = getattr(search_mod, "query_views", None)
        if qv is not None:
            return list(qv(rgb))
        core = cut_borders(rgb)
        return [core, np.ascontiguousarray(core[:, ::-1])]

    data_dir = Path(job["data_dir"])
    files = video_files(job)
    queries = _query_frames(files, job["n_queries"], seed=7)
    fields = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    toggles = [t for t in ("refine", "verify") if fields.get(t) is True]
    res: dict[str, Any] = {"n_queries": len(queries), "toggles": toggles}
    cfg = make_cfg(data_dir)
    on = [t for t in toggles if getattr(cfg.search, t)]
    res["toggles_on_by_default"] = on
    cfg_off = make_cfg(data_dir, **{f"P4V_SEARCH__{t.upper()}": "false" for t in toggles})
    with open_catalogue(cfg) as cat, VectorStore(cfg) as store:
        embedder = Embedder.from_config(cfg)
        searcher = search_mod.Searcher(cfg, cat, store, embedder)
        searcher_off = search_mod.Searcher(cfg_off, cat, store, embedder)
        store.load()
        searcher_off.search([("warm", queries[0][2])])  # first search: Lite index load, session warm-up
        searcher.search([("warm", queries[0][2])])
        t_views, t_embed, t_vec, t_off, t_def = [], [], [], [], []
        top1_off = top1_def = 0
        for name, _t, rgb in queries:
            tv = time.perf_counter()
            views = views_of(rgb)
            t0 = time.perf_counter()
            vecs = embedder.embed(views)
            t1 = time.perf_counter()
            store.search(vecs[:1], cfg.search.candidates)
            t2 = time.perf_counter()
            ans = searcher_off.search([(name, rgb)])
            t3 = time.perf_counter()
            t_views.append(t0 - tv)
            t_embed.append(t1 - t0)
            t_vec.append(t2 - t1)
            t_off.append(t3 - t2)
            if ans[0].results and _same_footage(Path(ans[0].results[0].video_path).name, name):
                top1_off += 1
        n_def = job["n_refine"] if on else 0
        for name, _t, rgb in queries[:n_def]:
            t0 = time.perf_counter()
            ans = searcher.search([(name, rgb)])
            t_def.append(time.perf_counter() - t0)
            if ans[0].results and _same_footage(Path(ans[0].results[0].video_path).name, name):
                top1_def += 1
        res.update({
            "query_views": lat_summary(t_views), "embed_2views": lat_summary(t_embed), "vector_nq1": lat_summary(t_vec),
            "searcher_off": lat_summary(t_off), "searcher_default": lat_summary(t_def) if t_def else None,
            "top1_video_off": top1_off / max(1, len(queries)),
            "top1_video_default": top1_def / n_def if n_def else None,
            "library_vectors": cat.count_keyframes(), "index_type": store.index_type, "vector_dim": embedder.dim,
        })
        res["projection"] = _projection_check(cfg, cat, embedder, job["capture_path"],
                                              [(n, views_of(rgb)[0]) for n, _t, rgb in queries])
    res["peak_rss_mb"] = peak_rss_mb()
    res["lite_engine_mb"] = lite_engine_mb()
    return res


def _projection_check(cfg: Any, cat: Any, embedder: Any, capture_path: str,
                      queries: list[tuple[str, np.ndarray]]) -> dict[str, Any] | None:
    """Brute-force top-1 video on the real library with the product's vectors (what ingest stored: the
    projection applied) and with the raw model features of the same keyframe images and queries."""
    from utils.embedder import METADATA_FILE
    from utils.images import read_keyframe

    if embedder.projection is None:
        return None
    lib = np.load(capture_path)
    ids, vids, X = lib["ids"], lib["video_ids"], lib["vectors"]
    rows = cat.keyframes_by_id([int(i) for i in ids])
    paths = [str(cfg.data_path / rows[int(i)].image_path) for i in ids]
    X_raw = np.concatenate([embedder.embed_raw([read_keyframe(p) for p in paths[s:s + 64]])
                            for s in range(0, len(paths), 64)])
    names = [n for n, _ in queries]
    images = [img for _, img in queries]
    video_names = {v.id: Path(v.path).name for v in cat.videos()}

    def top1_video(lib_x: np.ndarray, q: np.ndarray) -> float:
        best = np.argmax(q @ lib_x.T, axis=1)
        return float(np.mean([_same_footage(video_names.get(int(vids[b]), ""), n) for b, n in zip(best, names)]))

    meta = json.loads((embedder.path.parent / METADATA_FILE).read_text())["projection"]
    return {"name": embedder.projection.name, "dim": embedder.dim, "raw_dim": embedder.raw_dim,
            "library": int(len(X)), "queries": len(queries),
            "top1_video": top1_video(X, embedder.embed(images)),
            "top1_video_raw": top1_video(X_raw, embedder.embed_raw(images)),
            "fitted_on": int(meta.get("fitted_on", {}).get("pictures", 0))}


# ----------------------------------------------------------------------------------- synthetic vectors
class Synth:
    """Deterministic synthetic keyframe vectors in the product's space: a real keyframe vector as the product
    stores it (captured during the ingest: the model's features after the shipped projection) plus isotropic
    noise, L2-normalised."""

    def __init__(self, real_path: str, seed: int = 1):
        self.base = np.load(real_path)["vectors"].astype(np.float32)
        self.dim = int(self.base.shape[1])
        self.seed = seed

    def _make(self, rng: np.random.Generator, m: int, sigma: float) -> np.ndarray:
        a = rng.integers(0, len(self.base), size=m)
        noise = rng.standard_normal((m, self.dim), dtype=np.float32) * np.float32(sigma / np.sqrt(self.dim))
        v = self.base[a] + noise
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return v

    def chunk(self, start: int) -> np.ndarray:
        """Rows [start, start + SYNTH_CHUNK) of the library (start a multiple of SYNTH_CHUNK)."""
        return self._make(np.random.default_rng([self.seed, start]), SYNTH_CHUNK, SIGMA_LIB)

    def rows(self, n: int, start: int = 0):
        """(first id, vectors) chunks covering rows [start, n)."""
        c0 = (start // SYNTH_CHUNK) * SYNTH_CHUNK
        for c in range(c0, n, SYNTH_CHUNK):
            v = self.chunk(c)
            lo, hi = max(start, c) - c, min(n, c + SYNTH_CHUNK) - c
            yield c + lo, v[lo:hi]

    def queries(self, nq: int) -> np.ndarray:
        return self._make(np.random.default_rng([self.seed, 999_999_999]), nq, SIGMA_QUERY)


def ground_truth(syn: Synth, n: int, Q: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """Exact top-k ids by cosine (inner product of unit vectors), chunk by chunk."""
    best_s = np.full((len(Q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(Q), k), dtype=np.int64)
    for first, v in syn.rows(n):
        s = Q @ v.T
        ids = np.arange(first, first + len(v))
        cs = np.concatenate([best_s, s], axis=1)
        ci = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        top = np.argpartition(-cs, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cs, top, axis=1)
        best_i = np.take_along_axis(ci, top, axis=1)
    return best_i


def w_groundtruth(job: dict[str, Any]) -> dict[str, Any]:
    syn = Synth(job["real_path"])
    Q = syn.queries(job["nq"])
    t0 = time.perf_counter()
    gt = ground_truth(syn, job["n"], Q)
    np.savez(job["gt_path"], queries=Q, gt=gt)
    return {"wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------- vector store scale
def _schema(dim: int):
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="perf.py synthetic")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("video_id", DataType.INT64)
    schema.add_field("timestamp", DataType.FLOAT)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def _store_cfg(job: dict[str, Any], index: str):
    return make_cfg(Path(job["data_dir"]), P4V_MILVUS__URI=job["uri"], P4V_MILVUS__COLLECTION=job["collection"],
                    P4V_MILVUS__INDEX_TYPE=index)


def _insert(store: Any, syn: Synth, n: int) -> float:
    """Insert rows [0, n) in the product's batches (milvus.insert_batch): Milvus Lite 2.5 inserts small
    batches fastest (measured: 512 rows 17k rows/s, 4,096 rows 8k rows/s, 7,812 rows x 256-d 0.2k rows/s)."""
    batch = store.cfg.insert_batch
    t0 = time.perf_counter()
    for first, v in syn.rows(n):
        for s in range(0, len(v), batch):
            part = v[s:s + batch]
            rows = [{"id": first + s + j, "video_id": (first + s + j) // 200, "timestamp": float((first + s + j) % 200),
                     "embedding": vec} for j, vec in enumerate(part.tolist())]
            store.client.insert(store.name, rows)
    return time.perf_counter() - t0


def _build_index(store: Any, index: str, n: int, server: bool, timeout_s: float) -> dict[str, float]:
    """create_index (+ wait for the server's index nodes) + load; seconds of each."""
    client, name = store.client, store.name
    params = store._build_params()  # the project's own build parameters (M/efConstruction/nlist), Lite nesting
    ip = client.prepare_index_params()
    ip.add_index(field_name="embedding", index_name="embedding", index_type=index, metric_type=store.cfg.metric_type,
                 params=params)
    t0 = time.perf_counter()
    client.create_index(name, ip)
    if server:
        deadline = time.monotonic() + timeout_s
        while True:
            d = client.describe_index(name, "embedding")
            if int(d.get("indexed_rows", 0)) >= n and int(d.get("pending_index_rows", 0)) == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"index build not finished after {timeout_s:.0f} s: {d}")
            time.sleep(0.5)
    t1 = time.perf_counter()
    client.load_collection(name)
    store._loaded = True
    return {"build_s": t1 - t0, "load_s": time.perf_counter() - t1}


def _measure_search(store: Any, Q: np.ndarray, gt: np.ndarray, job: dict[str, Any], extra: dict[str, Any]
                    ) -> dict[str, Any]:
    """nq=1 latency, nq=32 throughput, recall@10 against the exact top-10, and the query embedding included."""
    limit = SEARCH_LIMIT
    nq1 = job["nq1"]
    if job.get("server_pid"):
        time.sleep(5)  # let the server settle after load (segment handoff, compaction) before timing
    t_warm = time.perf_counter()
    i = 0
    while i < 10 or time.perf_counter() - t_warm < 2.0:  # warm-up: at least 10 queries and 2 s
        store.search(Q[i % len(Q):i % len(Q) + 1], limit)
        i += 1
    lat, recall = [], []
    for i in range(nq1):
        q = Q[i % len(Q): i % len(Q) + 1]
        t0 = time.perf_counter()
        hits = store.search(q, limit)
        lat.append(time.perf_counter() - t0)
        if i < len(Q):
            got = {h.id for h in hits[0][:RECALL_K]}
            recall.append(len(got & set(int(x) for x in gt[i])) / RECALL_K)
    out: dict[str, Any] = {"nq1": lat_summary(lat), "recall_at_10": float(np.mean(recall)) if recall else None}
    batches = []
    nb = job["batches"]
    for b in range(nb):
        s = (b * 32) % max(1, len(Q) - 32)
        t0 = time.perf_counter()
        store.search(Q[s:s + 32], limit)
        batches.append(time.perf_counter() - t0)
    out["nq32"] = lat_summary(batches)
    out["nq32_qps"] = 32 * nb / sum(batches) if batches else 0.0
    if extra.get("embedder") is not None:
        from utils.search import query_views

        emb, images = extra["embedder"], extra["images"]
        e2e = []
        for i in range(job["n_e2e"]):
            rgb = images[i % len(images)]
            t0 = time.perf_counter()
            v = emb.embed(query_views(rgb))  # what Searcher embeds: the image and its mirror, projected
            store.search(v, limit)
            e2e.append(time.perf_counter() - t0)
        out["with_embedding"] = lat_summary(e2e)
    return out


def w_store(job: dict[str, Any]) -> dict[str, Any]:
    """One vector-store case: build (insert + index types in turn) and/or search, Lite or server."""
    from utils.vectorstore import ModelInfo, VectorStore

    server = "://" in job["uri"]
    phases: dict[str, float] = {"imports": time.perf_counter() - T_START}
    t_phase = time.perf_counter()
    syn = Synth(job["real_path"])
    gt_file = np.load(job["gt_path"])
    Q, gt = gt_file["queries"], gt_file["gt"]
    extra: dict[str, Any] = {}
    if job.get("n_e2e"):
        from utils.embedder import Embedder

        extra["embedder"] = Embedder.from_config(make_cfg(Path(job["data_dir"])))
        if extra["embedder"].dim != syn.dim:
            raise RuntimeError(f"the embedder gives {extra['embedder'].dim}-d vectors, the library {syn.dim}-d")
        extra["images"] = _keyframe_images(Path(job["lib_dir"]), 20, seed=3)
    results: dict[str, Any] = {"dim": syn.dim, "n": job["n"], "cases": [], "phases": phases}
    first_index = job["indexes"][0]
    store = VectorStore(_store_cfg(job, first_index))
    phases["setup"] = time.perf_counter() - t_phase
    try:
        if job["build"]:
            if store.exists():
                store.drop()
            store.client.create_collection(store.name, schema=_schema(syn.dim),
                                           properties=ModelInfo("synthetic", "0" * 64, syn.dim).props())
            results["insert_s"] = _insert(store, syn, job["n"])
            t0 = time.perf_counter()
            store.flush()
            results["flush_s"] = time.perf_counter() - t0
            results["insert_rate"] = job["n"] / (results["insert_s"] + results["flush_s"])
        for k, index in enumerate(job["indexes"]):
            case: dict[str, Any] = {"index": index}
            store.index_type = index
            if job["build"]:
                if k > 0:
                    store.client.release_collection(store.name)
                    store.client.drop_index(store.name, "embedding")
                try:
                    case.update(_build_index(store, index, job["n"], server, job.get("index_timeout_s", 3600)))
                except Exception as exc:  # noqa: BLE001 - a failed index type is a table row, not a crash
                    case["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    results["cases"].append(case)
                    continue
                case["build_rate"] = job["n"] / case["build_s"] if case["build_s"] > 0 else None
            if job["search"]:
                if not job["build"]:
                    t0 = time.perf_counter()
                    store.load()
                    case["load_s"] = time.perf_counter() - t0
                t_phase = time.perf_counter()
                case.update(_measure_search(store, Q, gt, job, extra))
                phases[f"search_{index}"] = time.perf_counter() - t_phase
                if job.get("server_pid"):
                    case["server_mem_mb"] = proc_mem_mb(int(job["server_pid"]))
            results["cases"].append(case)
        if job.get("drop_after"):
            t_phase = time.perf_counter()
            store.drop()
            phases["drop"] = time.perf_counter() - t_phase
    finally:
        store.close()
    results["peak_rss_mb"] = peak_rss_mb()
    if server:
        results["server_mem_mb"] = proc_mem_mb(int(job["server_pid"]))
    else:
        results["lite_engine_mb"] = lite_engine_mb()
    return results


WORKERS = {"decode": w_decode, "extract": w_extract, "ingest": w_ingest, "embed": w_embed, "e2e": w_e2e,
           "groundtruth": w_groundtruth, "store": w_store}


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = WORKERS[job["worker"]](job)
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
                  "peak_rss_mb": peak_rss_mb()}
    Path(job["result_path"]).write_text(json.dumps(result, default=float))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
