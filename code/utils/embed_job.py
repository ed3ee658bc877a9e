"""Insert2Milvus' job: embed every catalogued keyframe not yet embedded and put it in Milvus.

Order matters for consistency: vectors are upserted (by keyframe id) first and the catalogue's
``embedded`` flags are set only after Milvus accepted the batch. A crash in between leaves flags
off for vectors that exist; the re-run upserts them again, which replaces rather than duplicates.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .catalogue import Catalogue, KeyframeRow
from .config import Config
from .embedder import Embedder
from .images import cut_borders, read_keyframe
from .vectorstore import ModelInfo, VectorStore
from .verify import has_stored_features, store_keyframe_features


@dataclass
class EmbedSummary:
    embedded: int = 0
    already: int = 0
    wall_s: float = 0.0
    rebuilt: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "embedded": self.embedded,
            "already_embedded": self.already,
            "rebuilt": self.rebuilt,
            "wall_seconds": round(self.wall_s, 3),
            "keyframes_per_second": round(self.embedded / self.wall_s, 2) if self.wall_s > 0 else 0.0,
        }

    def describe(self) -> str:
        rate = self.embedded / self.wall_s if self.wall_s > 0 else 0.0
        return (f"embedded {self.embedded} keyframes ({self.already} were already in Milvus) in {self.wall_s:.1f} s, "
                f"{rate:.1f} keyframes/s" + (", collection rebuilt" if self.rebuilt else ""))


def open_collection(cat: Catalogue, store: VectorStore, embedder: Embedder, rebuild: bool = False) -> bool:
    """Make sure the collection exists for this model (refusing another model's); a new one holds
    nothing, whatever the catalogue's flags said, so every keyframe is flagged for embedding.
    Returns whether it is new."""
    if rebuild:
        store.drop()
    if store.model() is None:
        store.ensure(ModelInfo.of(embedder))
        cat.mark_all_unembedded()
        return True
    store.check(ModelInfo.of(embedder))
    return False


EMBED_BACKLOG = 8  # batches of keyframe images waiting for the model at most (about 100 MB at 480 px)
EMBED_NICE = 10  # CPU priority of Create --embed's embedding thread: the decoder is served first


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority (Linux sets it per thread). The decoder is the ingest's
    critical path; on a busy CPU the embedding takes what decoding leaves and catches up at the end."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBED_NICE)
    except (AttributeError, OSError):
        pass  # another OS, or not permitted: the same work at the default priority


def keyframe_for_model(path: str, keep_features: bool) -> np.ndarray:
    """A stored keyframe as the model sees it (flat borders cut, as queries are); its ORB features
    stored beside it too when ``keep_features`` (Search then reads them instead of computing them)."""
    if keep_features:
        store_keyframe_features(path)
    return read_keyframe(path)


@dataclass
class _Committed:
    """A video whose keyframe rows are in the catalogue and whose vectors are still being computed."""

    video_id: int
    ids: list[int]
    timestamps: list[float]
    vectors: list[Future[np.ndarray]]  # its batches, as EmbedSink.end_video gave them


class StoreOpening:
    """A VectorStore being opened in a thread of its own, so that other work starts at once (Milvus Lite
    starts its engine: over a second); closed once it has opened, even if it is not wanted any more."""

    def __init__(self, open_store: Callable[[], VectorStore]):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="p4v-milvus-open")
        self._future: Future[VectorStore] = self._pool.submit(open_store)

    def result(self) -> VectorStore:
        """The open store; raises what opening raised."""
        return self._future.result()

    def done(self) -> bool:
        return self._future.done()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._future.exception() is None:
            self._future.result().close()


class EmbedSink:
    """Embeds keyframes in a background thread while videos are still being decoded.

    Milvus is opened in a thread of its own (Milvus Lite starts its engine: over a second) while the
    first videos are decoded and embedded; their rows wait for it uncommitted (see
    ``Ingester.ingest_file``), so a vector store that cannot be opened fails the run with nothing
    catalogued.
    Vectors wait in memory until the keyframe rows exist (``commit`` gets their ids), then go to
    Milvus and the rows are flagged: the same upsert-then-flag order as ``embed_pending``, so a
    crash at any point leaves keyframes that the next run embeds. The decoder does not wait for a
    video's vectors before the next video: they are inserted once ready (and all at :meth:`close`),
    with at most EMBED_BACKLOG batches queued so that a slow model bounds the memory held.
    """

    def __init__(self, cfg: Config, cat: Catalogue, embedder: Embedder,
                 open_store: Callable[[], VectorStore]):
        self.cat, self.embedder = cat, embedder
        self.batch = max(cfg.model.batch_size, 1)
        self.keep_features = cfg.keyframes.store_features
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="p4v-embed", initializer=_yield_cpu)
        self.embedded = 0
        self._images: list[np.ndarray] = []
        self._paths: list[str] = []
        self._futures: list[Future[np.ndarray]] = []  # the video being decoded
        self._committed: deque[_Committed] = deque()
        self._backlog: deque[Future[np.ndarray]] = deque()
        self._opening = StoreOpening(open_store)
        self._store: VectorStore | None = None

    def ready(self) -> VectorStore:
        """The open collection, checked for (or created with) this model; raises what opening raised."""
        if self._store is None:
            store = self._opening.result()
            open_collection(self.cat, store, self.embedder)
            self._store = store
        return self._store

    def add(self, image: np.ndarray, path: str) -> None:
        """Embed a keyframe's pixels (``path``: where its image is written, for its stored features)."""
        self._images.append(image)
        self._paths.append(path)
        if len(self._images) >= self.batch:
            self._submit()

    def _embed(self, images: list[np.ndarray], paths: list[str]) -> np.ndarray:
        """One batch, in the embedding thread: the keyframes' features stored (when configured: their
        images are written before they are added), then the vectors of the border-cut pixels. Both off
        the decoding thread, at the embedding's lower priority."""
        if self.keep_features:
            for path in paths:
                store_keyframe_features(path)
        return self.embedder.embed([cut_borders(i) for i in images])

    def _submit(self) -> None:
        """Hand the batch to the embedding thread."""
        if self._images:
            future = self.pool.submit(self._embed, self._images, self._paths)
            self._futures.append(future)
            self._backlog.append(future)
            self._images, self._paths = [], []
        while self._backlog and (self._backlog[0].done() or len(self._backlog) > EMBED_BACKLOG):
            batch = self._backlog.popleft()  # one worker: the oldest batch is done first
            if not batch.cancelled():  # a failed video's batch (discard): nothing to wait for
                batch.result()

    def end_video(self) -> list[Future[np.ndarray]]:
        """The batches of the video just decoded (their vectors may still be computing)."""
        self._submit()
        batches, self._futures = self._futures, []
        return batches

    def drop_video(self) -> None:
        """Forget the keyframes added since the last :meth:`end_video`: their video failed."""
        self.discard(self._futures)
        self._futures, self._images, self._paths = [], [], []

    def opening(self) -> bool:
        """Whether Milvus is still being opened (:meth:`ready` would wait)."""
        return not self._opening.done()

    def commit(self, video: list[Future[np.ndarray]], video_id: int, ids: list[int], timestamps: list[float]) -> None:
        """Insert the video's vectors once they are computed (now, or at a later call): ``video`` is
        what :meth:`end_video` returned."""
        if ids:
            self._committed.append(_Committed(video_id, ids, timestamps, video))
        self._insert(wait=False)

    def _insert(self, wait: bool) -> None:
        """Upsert and flag, in commit order, the committed videos whose vectors are ready (all: ``wait``)."""
        while self._committed and (wait or all(f.done() for f in self._committed[0].vectors)):
            c = self._committed.popleft()
            ids = c.ids
            self.ready().upsert(ids, [c.video_id] * len(ids), c.timestamps, np.concatenate([f.result() for f in c.vectors]))
            self.cat.mark_embedded(ids)
            self.embedded += len(ids)

    def discard(self, video: list[Future[np.ndarray]]) -> None:
        """Forget a failed video's batches: those not started are cancelled, a running one is waited
        for, as it stores features beside the images that are about to be removed."""
        wait([f for f in video if not f.cancel()])

    def close(self) -> None:
        """Insert what is still being embedded, and seal it so searches use the index (the store stays
        open: see :meth:`ready`)."""
        self._insert(wait=True)
        self.pool.shutdown(wait=True)
        if self.embedded:
            self.ready().flush()
            self.ready().load()

    def close_store(self) -> None:
        """Close Milvus, once it has opened (even if it is not wanted any more)."""
        self.pool.shutdown(wait=True)
        self._opening.close()


def embed_pending(cfg: Config, cat: Catalogue, store: VectorStore, embedder: Embedder,
                  video_id: int | None = None, rebuild: bool = False,
                  on_batch: Callable[[int, int], None] | None = None) -> EmbedSummary:
    """Embed and insert pending keyframes into an open Milvus; ``on_batch(done, total)`` reports progress."""
    return _embed(cfg, cat, lambda: store, embedder, video_id, rebuild, on_batch)


def embed_library(cfg: Config, cat: Catalogue, video_id: int | None = None, rebuild: bool = False,
                  on_batch: Callable[[int, int], None] | None = None) -> EmbedSummary:
    """What Insert2Milvus.py runs: load the configured model and embed pending keyframes while Milvus
    opens in a thread (Milvus Lite starts its engine: over a second)."""
    opening = StoreOpening(lambda: VectorStore(cfg))
    try:
        return _embed(cfg, cat, opening.result, Embedder.from_config(cfg), video_id, rebuild, on_batch)
    finally:
        opening.close()


def _embed(cfg: Config, cat: Catalogue, get_store: Callable[[], VectorStore], embedder: Embedder,
           video_id: int | None, rebuild: bool, on_batch: Callable[[int, int], None] | None) -> EmbedSummary:
    """The embedding loop, pipelined: while one batch goes to Milvus and its flags are set, the next
    is read and embedded in threads; the first is embedded before the store is asked for (so a
    store still opening costs nothing). Should the collection turn out new (or rebuilt), every
    keyframe is pending again and the listing restarts from the first, keeping that first batch's
    work when it is still the first."""
    start = time.perf_counter()
    summary = EmbedSummary(rebuilt=rebuild)
    batch = max(cfg.model.batch_size, 1) * 4

    def pending(after_id: int) -> list[KeyframeRow]:
        return cat.keyframes(video_id=video_id, embedded=False, after_id=after_id, limit=batch)

    # as many readers as the embedder has preprocessing threads: one keeps a CPU's model fed, a GPU
    # embeds several times faster than one thread decodes JPEGs (bench/results/gpu.md)
    with ThreadPoolExecutor(max_workers=embedder.preprocess_threads) as reader, \
            ThreadPoolExecutor(max_workers=1) as worker:
        def submit(rows: list[KeyframeRow]) -> Future[np.ndarray] | None:
            """Read (reader threads) and embed (another) a batch: the next batch's JPEGs are decoded
            while this one is in the model."""
            if not rows:
                return None
            images = [reader.submit(keyframe_for_model, str(cfg.data_path / k.image_path), cfg.keyframes.store_features)
                      for k in rows]
            return worker.submit(lambda: embedder.embed([f.result() for f in images]))

        rows = [] if rebuild else pending(0)
        work = submit(rows)
        store = get_store()
        if open_collection(cat, store, embedder, rebuild):
            first = pending(0)
            if [k.id for k in first] != [k.id for k in rows]:
                rows, work = first, submit(first)
        total = cat.count_keyframes(video_id=video_id, embedded=False)
        summary.already = cat.count_keyframes(video_id=video_id, embedded=True)
        while rows and work is not None:
            upcoming = pending(rows[-1].id)
            next_work = submit(upcoming)
            vectors = work.result()
            ids = [k.id for k in rows]
            store.upsert(ids, [k.video_id for k in rows], [k.timestamp for k in rows], vectors)
            cat.mark_embedded(ids)
            summary.embedded += len(rows)
            if on_batch:
                on_batch(summary.embedded, total)
            rows, work = upcoming, next_work
    if summary.embedded or rebuild:
        store.flush()
        store.load()
    summary.wall_s = time.perf_counter() - start
    return summary


@dataclass
class FeatureSummary:
    """What :func:`store_missing_features` did, keyframe by keyframe."""

    stored: int = 0
    already: int = 0
    images_unreadable: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"features_stored": self.stored, "features_already_stored": self.already,
                "images_unreadable": self.images_unreadable}

    def describe(self) -> str:
        unreadable = (f"; {self.images_unreadable} keyframe images are missing or unreadable "
                      "(Check.py --repair finds the missing ones)" if self.images_unreadable else "")
        return f"stored ORB features for {self.stored} keyframes ({self.already} had them){unreadable}"


FEATURE_PAGE = 256  # keyframe rows listed at a time while storing features


def store_missing_features(cfg: Config, cat: Catalogue, video_id: int | None = None,
                           on_batch: Callable[[int, int], None] | None = None) -> FeatureSummary:
    """Store Search's ORB features beside every catalogued keyframe image that has none it can read:
    how a library embedded before ``keyframes.store_features`` was turned on gets them, without
    re-embedding anything. Safe to re-run or interrupt (features already stored are skipped, a file
    cut short is stored again). ``on_batch(done, total)`` reports progress."""
    tally: Counter[str] = Counter()
    total = cat.count_keyframes(video_id=video_id)

    def one(path: Path) -> str:
        if has_stored_features(path):
            return "already"
        return "stored" if store_keyframe_features(path) else "images_unreadable"

    # OpenCV and numpy's file reading release the GIL: one thread a core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rows = cat.keyframes(video_id=video_id, limit=FEATURE_PAGE)
        while rows:
            tally.update(pool.map(one, [cfg.data_path / k.image_path for k in rows]))
            if on_batch:
                on_batch(sum(tally.values()), total)
            rows = cat.keyframes(video_id=video_id, after_id=rows[-1].id, limit=FEATURE_PAGE)
    return FeatureSummary(tally["stored"], tally["already"], tally["images_unreadable"])
